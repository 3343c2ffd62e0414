from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from omost_renderer.pipelines.sdxl.attention_processor import (
    RegionalAttnProcessor,
    RegionalContext,
    layer_size,
    regional_attention_installed,
)
from omost_renderer.pipelines.sdxl.pipeline_sdxl import OmostSDXLPipeline


@pytest.mark.parametrize(
    ("n", "expected"), [(144 * 112, (144, 112)), (72 * 56, (72, 56)), (36 * 28, (36, 28))]
)
def test_layer_size_recovers_sdxl_feature_maps(n: int, expected: tuple[int, int]) -> None:
    assert layer_size(n, 144, 112) == expected


def test_layer_size_rounds_odd_sides_up() -> None:
    assert layer_size(5 * 4, 9, 7) == (5, 4)


def test_layer_size_rejects_impossible_lengths() -> None:
    with pytest.raises(ValueError, match="no reduction"):
        layer_size(1000, 144, 112)


def test_one_global_region_equals_plain_cross_attention() -> None:
    torch.manual_seed(0)
    attn = Attention(query_dim=16, cross_attention_dim=24, heads=2, dim_head=8)
    hidden = torch.randn(2, 6 * 4, 16)
    text = torch.randn(2, 9, 24)
    plain = AttnProcessor2_0()(attn, hidden, text)
    context = RegionalContext(torch.zeros(1, 9, dtype=torch.int64), torch.ones(1, 90, 90), 6, 4, 2)
    regional = RegionalAttnProcessor(context)(attn, hidden, text)
    torch.testing.assert_close(regional, plain, atol=1e-5, rtol=1e-5)


def test_processors_are_installed_on_cross_attention_only_and_restored(
    tiny_renderer: OmostSDXLPipeline,
) -> None:
    unet = tiny_renderer.unet
    before = {name: type(p) for name, p in unet.attn_processors.items()}
    context = RegionalContext(torch.zeros(1, 3, dtype=torch.int64), torch.ones(1, 90, 90), 8, 8)
    with regional_attention_installed(unet, context):
        during = unet.attn_processors
        cross = [n for n in during if n.endswith("attn2.processor")]
        assert cross
        assert all(isinstance(during[n], RegionalAttnProcessor) for n in cross)
        assert all(isinstance(p, AttnProcessor2_0) for n, p in during.items() if n not in cross)
    assert {name: type(p) for name, p in unet.attn_processors.items()} == before
