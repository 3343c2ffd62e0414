"""Masks stored for the fused kernel: keys padded to 8 in storage, rows as views, built once."""

from __future__ import annotations

import torch
from omost_renderer.pipelines.mask_layout import MASK_ALIGNMENT, padded_keys, rows_of_groups
from omost_renderer.pipelines.sdxl.attention_processor import RegionalContext


def _aligned(mask: torch.Tensor) -> bool:
    """What PyTorch's memory-efficient kernel takes without padding a copy."""
    strides = mask.stride()
    return strides[-1] == 1 and all(s % MASK_ALIGNMENT == 0 for s in strides[:-1])


def test_padded_keys_keep_the_values_in_aligned_storage() -> None:
    bias = torch.randn(2, 5, 13)
    storage = padded_keys(bias)
    assert storage.shape == (2, 5, 16)
    view = storage[..., :13]
    assert torch.equal(view, bias)
    assert _aligned(view)
    assert not _aligned(bias)
    assert (storage[..., 13:] == float("-inf")).all()
    # Already aligned: no copy of the layout is needed.
    even = torch.randn(3, 4, 8)
    assert padded_keys(even).data_ptr() == even.data_ptr()


def test_rows_of_groups_are_views_where_the_layout_allows() -> None:
    groups = torch.randn(2, 4, 8)
    assert rows_of_groups(groups, (1, 1)) is groups
    one = groups[:1]
    repeated = rows_of_groups(one, (3,))
    assert repeated.shape == (3, 4, 8)
    assert repeated.stride(0) == 0
    assert repeated.data_ptr() == one.data_ptr()
    mixed = rows_of_groups(groups, (2, 1))
    assert torch.equal(mixed, torch.stack([groups[0], groups[0], groups[1]]))


def _context(repeats: int | tuple[int, ...], groups: int = 2) -> RegionalContext:
    masks = torch.zeros(2, 90, 90)
    masks[0] = 1
    masks[1, :, :45] = 1
    token_region = torch.tensor([[0] * 5 + [1] * 6 + [-1] * 2] * groups)
    return RegionalContext(token_region, masks, 8, 8, repeats=repeats)


def test_layer_masks_are_aligned_built_once_and_views_of_one_group() -> None:
    context = _context(repeats=1)
    scale, bias = context.for_layer(16, torch.device("cpu"), torch.float32)
    assert bias.shape == (2, 16, 13)
    assert _aligned(bias)
    # Cached: a later step gets the same tensors, no new mask.
    again = context.for_layer(16, torch.device("cpu"), torch.float32)
    assert again[0] is scale
    assert again[1] is bias
    # Omost's separate passes: one group repeated per image is a view, not k copies.
    _, single = _context(repeats=3, groups=1).for_layer(16, torch.device("cpu"), torch.float32)
    assert single.shape == (3, 16, 13)
    assert single.stride(0) == 0
    assert _aligned(single)
    # Several jobs' groups with different image counts: one gathered copy, still aligned.
    _, mixed = _context(repeats=(2, 1)).for_layer(16, torch.device("cpu"), torch.float32)
    assert mixed.shape == (3, 16, 13)
    assert _aligned(mixed)
    assert torch.equal(mixed[0], mixed[1])
