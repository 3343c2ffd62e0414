"""FLUX.2 text encoding: the tiny tokenizer built in code, Qwen3 states stacked per region."""

from __future__ import annotations

import torch
from omost_renderer.pipelines.flux2.encoding import (
    KLEIN_LAYERS,
    encode_text,
    qwen_ids,
    stacked_layers,
    text_positions,
)
from omost_renderer.pipelines.flux2.tiny import TEXT_WIDTH, tiny_flux2_encoder
from omost_renderer.pipelines.flux2.tiny_qwen_tokenizer import (
    TINY_QWEN_VOCAB,
    build_tiny_qwen_tokenizer,
)


def test_the_tiny_tokenizer_fits_the_tiny_encoder_and_renders_qwen3s_chat_turn() -> None:
    tokenizer = build_tiny_qwen_tokenizer()
    assert len(tokenizer) == 261
    assert len(tokenizer) <= TINY_QWEN_VOCAB
    text = "a red dragon, 龍 — é"
    ids = qwen_ids(tokenizer, text)
    assert max(ids) < TINY_QWEN_VOCAB
    assert tokenizer.decode(ids) == (
        f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    assert len(qwen_ids(tokenizer, text * 100, max_tokens=30)) == 30


def test_stacked_hidden_layers_give_the_transformers_text_width() -> None:
    encoder = tiny_flux2_encoder()
    states = encode_text(encoder, "a lake", max_tokens=512)
    assert states.shape == (1, len(qwen_ids(encoder.tokenizer, "a lake")), TEXT_WIDTH)
    hidden = encoder.text_encoder(
        input_ids=torch.tensor([qwen_ids(encoder.tokenizer, "a lake")]), output_hidden_states=True
    ).hidden_states
    # diffusers' order: per token, layer after layer.
    assert torch.equal(states[0, :, :16], hidden[1][0])
    assert torch.equal(states[0, :, 32:], hidden[3][0])


def test_klein_layers_for_qwen3_4b_and_the_last_three_of_a_small_encoder() -> None:
    assert stacked_layers(36) == KLEIN_LAYERS == (9, 18, 27)
    assert stacked_layers(3) == (1, 2, 3)
    assert stacked_layers(5) == (3, 4, 5)


def test_text_positions_restart_in_every_prompt() -> None:
    ids = text_positions([2, 3])
    assert ids[:, 3].tolist() == [0, 1, 0, 1, 2]
    assert ids[:, :3].abs().sum() == 0
