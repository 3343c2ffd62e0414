"""The `tiny` model: a random-weight Llama with a real Llama-3 tokenizer, built in code, offline.

Random weights write random tokens; under constrained decoding every one of them still yields a
valid canvas, so tests run the whole path for real. Uniformly random tokens would fill every string
to its length limit, so the weights carry a designed prior: one embedding dimension is a constant
that the final norm passes through, and the output matrix maps it to a bonus for tokens that close a
string, a list or the code block and end the turn, and to a penalty for filler (whitespace,
comment lines) that Omost code allows between statements. Canvases then stay a few hundred tokens
long in both output modes, and sampling keeps them varied.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

TINY_MODEL = "tiny"
TINY_VOCAB_FILE = "ggml-vocab-llama-bpe.gguf"

# A Llama-3 chat template (the GGUF vocabulary file carries none).
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' "
    "+ message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% endif %}"
)

_CLOSING_CHARS = set("'\"`,.)]}\n ")
_CLOSING_BONUS = 6.0
# The random part of the logits has a spread of about 2.4: the filler penalty rules a token out,
# the closing bonus makes strings short, the end bonus ends the
# code block after a few locals.
_END_BONUS = 2.0
_FILLER_PENALTY = -30.0
_CONSTANT = 8.0
# Part of the folder name: a change of the prior builds a new model instead of reusing an old one.
_PRIOR_VERSION = 3


def tiny_model_dir(cache_dir: Path, seed: int = 0) -> Path:
    """Folder of the `tiny` model (config, safetensors, tokenizer), built on first use.

    Args:
        cache_dir: Where the vocabulary file lies (see ``scripts/fetch-tiny-vocab.sh``) and where
            the model folder is written.
        seed: Seed of the random weights.

    Returns:
        A folder that ``from_pretrained`` and vLLM load.

    Raises:
        FileNotFoundError: If the tokenizer vocabulary is missing.
    """
    folder = cache_dir / f"tiny-llama3-v{_PRIOR_VERSION}-seed{seed}"
    if (folder / "config.json").is_file():
        return folder
    vocab = cache_dir / TINY_VOCAB_FILE
    if not vocab.is_file():
        raise FileNotFoundError(
            f"{vocab} is missing: run scripts/fetch-tiny-vocab.sh (or `make install`) to extract "
            "the Llama-3 tokenizer vocabulary from llama-cpp-python's source archive"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Build in a scratch folder and rename, so concurrent processes never see half a model.
    scratch = Path(tempfile.mkdtemp(prefix=".tiny-", dir=cache_dir))
    scratch.chmod(0o755)
    try:
        _build(vocab, scratch, seed)
        os.rename(scratch, folder)
    except OSError:
        if not (folder / "config.json").is_file():
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return folder


def _build(vocab: Path, folder: Path, seed: int) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(vocab.parent), gguf_file=vocab.name)
    if len(tokenizer) < 1000:
        raise RuntimeError(f"the tokenizer read from {vocab} has only {len(tokenizer)} tokens")
    tokenizer.chat_template = LLAMA3_CHAT_TEMPLATE
    eot: Any = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=8192,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.eos_token_id, eot],
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    _shape_prior(model, tokenizer, [tokenizer.eos_token_id, eot])
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))


def _shape_prior(model: Any, tokenizer: Any, stop_ids: list[int]) -> None:
    import torch

    with torch.no_grad():
        embed = model.model.embed_tokens.weight  # (vocab, hidden) float32
        head = model.lm_head.weight  # (vocab, hidden) float32
        embed[:, 0] = _CONSTANT
        bonus = torch.tensor([_prior(tokenizer.decode([i])) for i in range(head.shape[0])])
        bonus[stop_ids] = _CLOSING_BONUS
        # After RMSNorm the constant dimension is about sqrt(hidden); scale the bonus to match.
        head[:, 0] = bonus / head.shape[1] ** 0.5
        head[:, 1:].normal_(0.0, 1.0)


def _prior(text: str) -> float:
    """The logit offset of one token (by its text) that shapes what random weights write."""
    if "```" in text:
        return _END_BONUS
    # The end of a list: detailed descriptions, or the locals (the canvas JSON ends with them).
    if text and set(text) <= set("]}") and "]" in text:
        return _CLOSING_BONUS
    # Whitespace and comment starts: the grammar allows them between any two tokens, and
    # uniform sampling would pick them all the time. Where a newline is required, the mask
    # leaves only such tokens, and one of them is still taken.
    if (text and not text.strip()) or text.lstrip().startswith("#"):
        return _FILLER_PENALTY
    # Only tokens with a quote can end a string; punctuation alone would fill it.
    if text and set(text) <= _CLOSING_CHARS and set(text) & set("'\""):
        return _CLOSING_BONUS
    return 0.0
