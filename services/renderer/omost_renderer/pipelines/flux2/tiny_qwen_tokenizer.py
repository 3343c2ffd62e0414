"""A tiny Qwen-style tokenizer built in code, for the tiny random Qwen3 encoder of ``tiny-flux2``.

FLUX.2 klein encodes prompts with Qwen3 through its chat template; no Qwen tokenizer ships
offline, so this one is built with the ``tokenizers`` library the way Qwen's is shaped: byte-level
BPE (every byte a token, no merges, so any text tokenizes and nothing is ever unknown), Qwen's
special tokens (``<|endoftext|>`` pads, ``<|im_start|>``, ``<|im_end|>``, ``<think>``,
``</think>``) and a chat template that renders a user message the way Qwen3's does with
``enable_thinking=False``. Its vocabulary (261 tokens) fits a tiny encoder's embedding table
(:data:`TINY_QWEN_VOCAB` rows).
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

#: Embedding rows a tiny Qwen3 needs to embed every id of this tokenizer (256 bytes + 5 special).
TINY_QWEN_VOCAB = 272
PAD, IM_START, IM_END, THINK, END_THINK = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<think>",
    "</think>",
)
#: Qwen3's chat template reduced to what the FLUX.2 pipelines render: user turns, then the
#: assistant's opening with an empty thinking block when thinking is off.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}"
    "<think>\n\n</think>\n\n{% endif %}{% endif %}"
)


def build_tiny_qwen_tokenizer(model_max_length: int = 512) -> PreTrainedTokenizerFast:
    """The tiny byte-level Qwen-style tokenizer with its chat template.

    Args:
        model_max_length: Longest sequence (FLUX.2's prompt bound, 512).

    Returns:
        A fast tokenizer whose ids are all below :data:`TINY_QWEN_VOCAB`.
    """
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: index for index, symbol in enumerate(sorted(alphabet))}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([PAD, IM_START, IM_END, THINK, END_THINK])
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        pad_token=PAD,
        eos_token=IM_END,
        model_max_length=model_max_length,
        chat_template=CHAT_TEMPLATE,
    )
