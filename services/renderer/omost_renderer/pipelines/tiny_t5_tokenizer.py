"""A tiny T5-style tokenizer built in code, for tiny random T5 encoders on CPU without downloads.

No T5 tokenizer ships offline (its SentencePiece model lives on the hub), so this one is built
with the ``tokenizers`` library the way T5's is shaped: a unigram model over ``▁``-prefixed
pieces (Metaspace pre-tokenizer), ``<pad>`` 0, ``</s>`` 1 appended to every text, ``<unk>`` 2.
Its pieces are the printable ASCII characters, alone and word-initial, so every ASCII text
tokenizes (anything else becomes ``<unk>``), and its vocabulary is small enough for a tiny
encoder's embedding table (:data:`TINY_T5_VOCAB` ids at most).
"""

from __future__ import annotations

import string

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

#: Embedding rows a tiny T5 needs to embed every id of this tokenizer (it has 192 tokens).
TINY_T5_VOCAB = 256
PAD, EOS, UNK = "<pad>", "</s>", "<unk>"


def build_tiny_t5_tokenizer(model_max_length: int = 512) -> PreTrainedTokenizerFast:
    """The tiny T5-style tokenizer.

    Args:
        model_max_length: Longest sequence (T5's 512).

    Returns:
        A fast tokenizer whose ids are all below :data:`TINY_T5_VOCAB`.
    """
    chars = [c for c in string.printable if not c.isspace()]
    # Equal scores: the segmentation with the fewest pieces wins, so "▁a" beats "▁" + "a".
    pieces = [(PAD, 0.0), (EOS, 0.0), (UNK, 0.0), ("▁", -2.0)]
    pieces += [(c, -2.0) for c in chars] + [("▁" + c, -2.0) for c in chars]
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=2))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", special_tokens=[(EOS, 1)]
    )
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=model_max_length,
    )
