from __future__ import annotations

import math

import torch
from omost_renderer.pipelines.joint_mask import (
    ImageAttention,
    area_bias,
    image_token_masks,
    joint_allowed,
    joint_bias,
)


def _masks() -> torch.Tensor:
    # Global, a left half and a top-left quarter on the 90x90 grid.
    masks = torch.zeros(3, 90, 90)
    masks[0] = 1
    masks[1, :, :45] = 1
    masks[2, :45, :45] = 1
    return masks


TOKENS = torch.tensor([0, 0, 1, 1, 1, 2])


def test_image_token_masks_resize_to_the_token_grid() -> None:
    inside = image_token_masks(_masks(), 2, 2)
    assert inside.tolist() == [
        [True, True, True, True],
        [True, False, True, False],
        [True, False, False, False],
    ]


def test_text_of_different_regions_never_sees_each_other() -> None:
    allowed = joint_allowed(TOKENS, image_token_masks(_masks(), 2, 2), ImageAttention.FREE)
    text = allowed[:6, :6]
    assert torch.equal(text, TOKENS[:, None] == TOKENS[None, :])


def test_region_text_and_its_box_see_each_other_only() -> None:
    inside = image_token_masks(_masks(), 2, 2)
    allowed = joint_allowed(TOKENS, inside, ImageAttention.FREE)
    text_image = allowed[:6, 6:]
    assert torch.equal(text_image, inside[TOKENS])
    assert torch.equal(allowed[6:, :6], text_image.T)
    # The global region's text sees every image token.
    assert bool(text_image[0].all())


def test_image_attention_free_or_restricted_to_shared_regions() -> None:
    halves = torch.zeros(4, 90, 90)
    halves[0] = 1
    halves[1, :, :45] = 1
    halves[2, :, 45:] = 1
    halves[3, :45, :] = 1
    inside = image_token_masks(halves, 2, 2)
    tokens = torch.tensor([0, 1, 2, 3])
    free = joint_allowed(tokens, inside, ImageAttention.FREE)[4:, 4:]
    restricted = joint_allowed(tokens, inside, ImageAttention.RESTRICTED)[4:, 4:]
    assert bool(free.all())
    # Top-left shares the left half with bottom-left and the top with top-right; bottom-left
    # and bottom-right share nothing but the global region.
    assert restricted.tolist() == [
        [True, True, True, False],
        [True, True, False, True],
        [True, False, True, False],
        [False, True, False, True],
    ]


def test_restricted_image_tokens_in_the_global_region_only_see_everything() -> None:
    inside = image_token_masks(_masks(), 2, 2)
    restricted = joint_allowed(TOKENS, inside, ImageAttention.RESTRICTED)[6:, 6:]
    # Top-right and bottom-right lie in no local region: they see and are seen by all.
    assert bool(restricted[1].all())
    assert bool(restricted[:, 3].all())
    assert bool(restricted[0, 2])


def test_area_bias_is_log_of_pixels_over_area() -> None:
    inside = image_token_masks(_masks(), 2, 2)
    bias = area_bias(TOKENS, inside)
    expected = [0.0, 0.0, math.log(2), math.log(2), math.log(2), math.log(4)]
    assert torch.allclose(bias, torch.tensor(expected))


def test_joint_bias_puts_area_bias_on_image_to_text_logits_only() -> None:
    bias = joint_bias(TOKENS, _masks(), 2, 2)
    assert bias is not None
    assert bias.shape == (1, 1, 10, 10)
    grid = bias[0, 0]
    # Image token 0 (top-left) sees region 2's text with log(4) added.
    assert math.isclose(float(grid[6, 5]), math.log(4), rel_tol=1e-6)
    # Text queries get no area bias; disallowed pairs are -inf.
    assert float(grid[5, 6]) == 0.0
    assert grid[7, 5] == float("-inf")
    no_scale = joint_bias(TOKENS, _masks(), 2, 2, area_scale=False)
    assert no_scale is not None
    assert float(no_scale[0, 0, 6, 5]) == 0.0


def test_a_canvas_with_only_its_global_region_has_no_mask() -> None:
    assert joint_bias(torch.zeros(4, dtype=torch.int64), torch.ones(1, 90, 90), 2, 2) is None
