from __future__ import annotations

import pytest
import torch
from omost_renderer.pipelines.regional_attention import (
    masked_scaled_attention,
    naive_regional_attention,
    region_bias,
    region_key_scale,
    regional_attention,
    resize_masks,
)

GRID = 90


def _box(top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    mask = torch.zeros(GRID, GRID)
    mask[top:bottom, left:right] = 1
    return mask


def _inputs(
    boxes: list[tuple[int, int, int, int]],
    height: int,
    width: int,
    heads: int,
    tokens: int,
    seed: int,
) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    grid = torch.stack([torch.ones(GRID, GRID), *(_box(*b) for b in boxes)])
    masks = resize_masks(grid, height, width)
    regions = len(boxes) + 1
    token_region = torch.arange(regions).repeat_interleave(tokens)
    n, length, d = height * width, regions * tokens, 8
    q = torch.randn(2, heads, n, d, generator=gen)
    k = torch.randn(2, heads, length, d, generator=gen)
    v = torch.randn(2, heads, length, d, generator=gen)
    return q, k, v, token_region, masks


@pytest.mark.parametrize(
    ("boxes", "height", "width", "heads", "tokens"),
    [
        ([], 8, 8, 2, 5),
        ([(0, 45, 0, 45), (45, 90, 45, 90)], 16, 12, 3, 7),  # disjoint
        ([(10, 70, 10, 60), (30, 90, 20, 90), (0, 90, 40, 50)], 18, 14, 2, 77),  # overlapping
        ([(20, 60, 15, 65)], 9, 7, 1, 3),  # odd sizes
    ],
)
def test_regional_attention_matches_naive_formula(
    boxes: list[tuple[int, int, int, int]], height: int, width: int, heads: int, tokens: int
) -> None:
    q, k, v, token_region, masks = _inputs(boxes, height, width, heads, tokens, seed=len(boxes))
    fused = regional_attention(q, k, v, token_region, masks)
    naive = naive_regional_attention(q, k, v, token_region, masks)
    assert fused.shape == q.shape
    torch.testing.assert_close(fused, naive, atol=1e-5, rtol=1e-4)
    # The additive mask the pipeline caches per resolution gives the same result.
    scale = region_key_scale(masks, token_region)
    bias = region_bias(masks, token_region, q.dtype)
    cached = masked_scaled_attention(q, k, v, scale, bias)
    torch.testing.assert_close(cached, naive, atol=1e-5, rtol=1e-4)


def test_naive_formula_is_the_spec_written_out() -> None:
    # One query, two keys in two regions: softmax of scaled logits by hand.
    q = torch.tensor([[[[1.0, 0.0]]]])
    k = torch.tensor([[[[2.0, 0.0], [1.0, 0.0]]]])
    v = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    masks = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])[:, :1].repeat(1, 4)
    masks[1, 2:] = 0
    token_region = torch.tensor([0, 1])
    # Query 0 is inside both regions; region 1 covers 2 of 4 pixels -> scale 2.
    q4 = q.repeat(1, 1, 4, 1)
    out = regional_attention(q4, k, v, token_region, masks)
    logits = torch.tensor([2.0 / 2**0.5 * 1.0, 1.0 / 2**0.5 * 2.0])
    weights = logits.softmax(0)
    torch.testing.assert_close(out[0, 0, 0], weights, atol=1e-6, rtol=1e-5)
    # Pixels outside region 1 see only the global token.
    torch.testing.assert_close(out[0, 0, 3], torch.tensor([1.0, 0.0]))


def test_region_tokens_only_affect_pixels_inside_the_region() -> None:
    box = (0, 45, 0, 90)  # the top half
    q, k, v, token_region, masks = _inputs([box], 10, 10, 2, 6, seed=3)
    before = regional_attention(q, k, v, token_region, masks)
    local = token_region == 1
    k2, v2 = k.clone(), v.clone()
    k2[:, :, local] = torch.randn_like(k2[:, :, local])
    v2[:, :, local] = torch.randn_like(v2[:, :, local]) * 5
    after = regional_attention(q, k2, v2, token_region, masks)
    inside = masks[1] > 0
    assert inside.any()
    assert (~inside).any()
    torch.testing.assert_close(after[:, :, ~inside], before[:, :, ~inside])
    assert (after[:, :, inside] - before[:, :, inside]).abs().min() > 0


def test_resize_masks_is_nearest_exact_from_the_grid() -> None:
    masks = resize_masks(_box(0, 45, 0, 30)[None], 6, 9)
    expected = torch.zeros(6, 9)
    expected[:3, :3] = 1
    torch.testing.assert_close(masks, expected.flatten()[None])
