from __future__ import annotations

import numpy as np
from omost_renderer.pipelines.flux.encoding import T5_MAX_TOKENS, encode_canvas, region_text
from omost_renderer.pipelines.flux.tiny import tiny_flux_encoders
from omost_renderer.pipelines.tiny_t5_tokenizer import TINY_T5_VOCAB, build_tiny_t5_tokenizer
from omost_schema import Canvas, Rect, RegionCondition


def test_the_tiny_t5_tokenizer_fits_the_tiny_encoder_and_ends_with_eos() -> None:
    tokenizer = build_tiny_t5_tokenizer()
    assert len(tokenizer) <= TINY_T5_VOCAB
    ids = tokenizer("A red dragon, 3 towers!").input_ids
    assert ids[-1] == tokenizer.eos_token_id == 1
    assert max(ids) < len(tokenizer)
    assert tokenizer.decode(ids, skip_special_tokens=True) == "A red dragon, 3 towers!"


def _condition(text: str, index: int | None) -> RegionCondition:
    mask = np.ones((90, 90), dtype=np.float32)
    return RegionCondition(
        mask=mask,
        prefixes=[text],
        suffixes=["tags"],
        rect=Rect(0, 90, 0, 90),
        color=(0, 0, 0),
        local_index=index,
    )


def test_t5_limit_applies_per_region_not_to_the_whole_canvas() -> None:
    encoders = tiny_flux_encoders()
    long = "word " * 400  # about 800 tiny-T5 tokens
    prompt = encode_canvas(
        encoders, [_condition(long, None), _condition(long, 0), _condition("short", 1)]
    )
    counts = np.bincount(prompt.token_region.numpy()).tolist()
    assert counts[:2] == [T5_MAX_TOKENS, T5_MAX_TOKENS]
    assert counts[2] == len(encoders.tokenizer_2("short tags").input_ids)
    assert prompt.embeds.shape == (1, sum(counts), 32)
    assert prompt.pooled.shape == (1, 32)
    assert prompt.masks.shape == (3, 90, 90)


def test_region_text_joins_prefixes_and_suffixes(dragon_canvas: Canvas) -> None:
    conditions = dragon_canvas.process().conditions
    assert region_text(conditions[0]).startswith("A majestic red dragon")
    local = region_text(conditions[1])
    assert local.startswith(region_text(conditions[0]).split(".")[0])
    assert "castle, towers, cliff" in local
