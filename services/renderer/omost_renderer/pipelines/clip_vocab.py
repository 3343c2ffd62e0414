"""CLIP's BPE tokenizer rebuilt offline from the vocabulary file that open_clip_torch ships.

CLIP's vocabulary is not stored as ``vocab.json`` anywhere we can read without a download, but
``open_clip`` bundles the original BPE merge list (``bpe_simple_vocab_16e6.txt.gz``). The token ids
follow from the merges the way CLIP's own tokenizer builds its encoder: 256 byte symbols, the same
256 with the end-of-word marker, one token per merge, then ``<|startoftext|>`` and
``<|endoftext|>`` (ids 49406 and 49407).
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

from transformers import CLIPTokenizer

#: Merges CLIP keeps from the file: 49152 - 256 - 2 (its vocabulary is 49408 tokens).
_N_MERGES = 49152 - 256 - 2
_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
BOS_ID = 49406
EOS_ID = 49407


def _bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP byte-to-character table as a list indexed by the token id of each byte."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("\xa1"), ord("\xac") + 1),
        *range(ord("\xae"), ord("\xff") + 1),
    ]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def find_bpe_file() -> Path | None:
    """Locate ``bpe_simple_vocab_16e6.txt.gz`` inside the installed ``open_clip`` package.

    The package is found by its import spec only; it is never imported (it would pull torchvision).

    Returns:
        The path, or ``None`` when open_clip_torch is not installed.
    """
    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / _BPE_FILE
    return path if path.is_file() else None


def load_bpe_vocab(bpe_path: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Read CLIP's merges and derive its token-to-id table.

    Args:
        bpe_path: The gzipped merge list.

    Returns:
        ``(vocab, merges)``: 49408 tokens with CLIP's ids, and the 48894 merges in rank order.
    """
    with gzip.open(bpe_path) as file:
        lines = file.read().decode("utf-8").split("\n")
    # The first line is a version header.
    merges = [tuple(line.split()) for line in lines[1 : _N_MERGES + 1]]
    pairs = [(m[0], m[1]) for m in merges]
    symbols = _bytes_to_unicode()
    tokens = [*symbols, *(s + "</w>" for s in symbols), *(a + b for a, b in pairs)]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}, pairs


def build_clip_tokenizer(bpe_path: Path, *, pad_token: str = "<|endoftext|>") -> CLIPTokenizer:
    """Build a ``transformers.CLIPTokenizer`` equal to SDXL's from the BPE merge file.

    Args:
        bpe_path: ``bpe_simple_vocab_16e6.txt.gz``.
        pad_token: ``"<|endoftext|>"`` for SDXL's first tokenizer (pad id 49407), ``"!"`` for its
            second (pad id 0).

    Returns:
        A tokenizer with ``model_max_length`` 77.
    """
    vocab, merges = load_bpe_vocab(bpe_path)
    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,  # type: ignore[arg-type]  # tokenizers wants (a, b) pairs
        pad_token=pad_token,
        model_max_length=77,
    )
