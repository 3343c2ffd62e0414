from __future__ import annotations

import pytest
import torch
from omost_renderer.pipelines.clip_vocab import BOS_ID, EOS_ID, build_clip_tokenizer, find_bpe_file
from omost_renderer.pipelines.sdxl.encoding import (
    CONTEXT,
    encode_ids,
    encode_plain,
    encode_regions,
    region_token_ids,
)
from omost_renderer.pipelines.sdxl.pipeline_sdxl import OmostSDXLPipeline
from omost_renderer.pipelines.sdxl.tiny import CLIP_WIDTH, OPEN_CLIP_WIDTH
from omost_schema import Canvas


def test_bpe_vocab_ships_with_open_clip() -> None:
    assert find_bpe_file() is not None


def test_real_clip_tokenizer_ids_and_padding(tiny_renderer: OmostSDXLPipeline) -> None:
    tok, tok2 = tiny_renderer.encoders.tokenizer, tiny_renderer.encoders.tokenizer_2
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (BOS_ID, EOS_ID, EOS_ID)
    assert (tok2.bos_token_id, tok2.eos_token_id, tok2.pad_token_id) == (BOS_ID, EOS_ID, 0)
    assert tok2.convert_ids_to_tokens(0) == "!"
    # CLIP's well-known ids: "a photo of a" -> 320 1125 539 320; "." -> 269; "," -> 267.
    ids = tok("a photo of a dragon, flying.", add_special_tokens=False).input_ids
    assert ids[:4] == [320, 1125, 539, 320]
    assert ids[-1] == 269
    assert 267 in ids
    assert len(tok) == 49408


def test_token_counts_of_the_dragon_descriptions(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas
) -> None:
    tok = tiny_renderer.encoders.tokenizer
    glob = dragon_canvas.global_description
    counts = [len(tok(t, add_special_tokens=False).input_ids) for t in glob.detailed_descriptions]
    # One token per word or punctuation mark for these plain English sentences.
    words = [
        len(t.replace(".", " .").replace("'s", " 's").split()) for t in glob.detailed_descriptions
    ]
    assert counts == words


def test_region_bags_are_framed_to_77_with_each_pad_id(tiny_renderer: OmostSDXLPipeline) -> None:
    suffixes = ["word " * 30 + ".", "other " * 30 + ".", "short."]
    for tok, pad in ((tiny_renderer.encoders.tokenizer, EOS_ID),
                     (tiny_renderer.encoders.tokenizer_2, 0)):  # fmt: skip
        bags = region_token_ids(tok, ["a red dragon."], suffixes)
        # The prefix takes 4 tokens, leaving 71: 31 + 31 + 2 = 64 fit in one bag.
        assert len(bags) == 1
        assert all(len(b) == CONTEXT for b in bags)
        assert bags[0][0] == BOS_ID
        body = 4 + 31 + 31 + 2
        assert bags[0][body + 1] == EOS_ID
        assert bags[0][body + 2 :] == [pad] * (CONTEXT - body - 2)


def test_region_bags_split_when_the_window_is_full(tiny_renderer: OmostSDXLPipeline) -> None:
    tok = tiny_renderer.encoders.tokenizer
    bags = region_token_ids(tok, ["a red dragon."], ["word " * 40 + ".", "other " * 40 + "."])
    assert len(bags) == 2
    prefix = tok("a red dragon.", add_special_tokens=False).input_ids
    assert all(b[1 : 1 + len(prefix)] == prefix for b in bags)


def test_encode_regions_tags_every_token_with_its_region(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas
) -> None:
    conditions = dragon_canvas.process().conditions
    encoded = encode_regions(tiny_renderer.encoders, conditions)
    length = encoded.embeds.shape[1]
    assert length % CONTEXT == 0
    assert encoded.embeds.shape == (1, length, CLIP_WIDTH + OPEN_CLIP_WIDTH)
    assert encoded.token_region.shape == (length,)
    assert encoded.token_region.unique().tolist() == [0, 1, 2]
    assert encoded.masks.shape == (3, 90, 90)
    assert float(encoded.masks[0].min()) == 1.0
    # Pooled: encoder 2's pooled output of the global region's first bag, before projection.
    encoders = tiny_renderer.encoders
    ids_1 = region_token_ids(encoders.tokenizer, conditions[0].prefixes, conditions[0].suffixes)
    ids_2 = region_token_ids(encoders.tokenizer_2, conditions[0].prefixes, conditions[0].suffixes)
    with torch.inference_mode():
        out = encoders.text_encoder_2.text_model(torch.tensor(ids_2[:1]))
    torch.testing.assert_close(encoded.pooled, out.pooler_output)
    features, _ = encode_ids(encoders, ids_1, ids_2)
    torch.testing.assert_close(encoded.embeds[:, : features.shape[1]], features)


def test_pooled_projection_option_applies_the_text_projection(
    tiny_renderer: OmostSDXLPipeline,
) -> None:
    from dataclasses import replace

    encoders = tiny_renderer.encoders
    plain = encode_plain(encoders, "a cat")
    projected = encode_plain(replace(encoders, pooled_projection=True), "a cat")
    with torch.inference_mode():
        expected = encoders.text_encoder_2.text_projection(plain.pooled)
    torch.testing.assert_close(projected.pooled, expected)


def test_negative_prompt_is_one_77_token_all_ones_region(tiny_renderer: OmostSDXLPipeline) -> None:
    encoded = encode_plain(tiny_renderer.encoders, "lowres, bad anatomy " * 40)
    assert encoded.embeds.shape == (1, CONTEXT, CLIP_WIDTH + OPEN_CLIP_WIDTH)
    assert encoded.token_region.tolist() == [0] * CONTEXT
    assert encoded.masks.shape == (1, 90, 90)
    assert bool((encoded.masks == 1).all())


def test_tokenizer_pad_token_choice() -> None:
    bpe = find_bpe_file()
    if bpe is None:
        pytest.skip("open_clip_torch not installed")
    tok = build_clip_tokenizer(bpe, pad_token="!")
    ids = tok("hi", padding="max_length", max_length=6).input_ids
    assert ids == [BOS_ID, tok.convert_tokens_to_ids("hi</w>"), EOS_ID, 0, 0, 0]
