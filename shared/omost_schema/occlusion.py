"""Depth-aware region masks (``mask_mode="occlusion"``): nearer boxes hide what is behind them.

Omost's masks ignore ``distance_to_viewer``: where boxes overlap, both regions claim the pixels.
In occlusion mode a local region's mask loses the boxes of every nearer local region (smaller
``distance_to_viewer``; equal distances hide nothing of each other). The global region keeps the
whole image. So that a region hidden behind nearer ones still shows, each keeps at least
``MIN_VISIBLE_SHARE`` of its box: when less is left, the centred core of its box of that share
is given back.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from omost_schema.geometry import GRID_SIZE, Rect

if TYPE_CHECKING:
    from omost_schema.canvas import Canvas
    from omost_schema.conditions import RegionCondition

MaskMode = Literal["omost", "occlusion"]
#: The least share of its box a region keeps however much of it nearer regions cover.
MIN_VISIBLE_SHARE = 0.25


def _box(rect: Rect) -> npt.NDArray[np.bool_]:
    mask = np.zeros((GRID_SIZE, GRID_SIZE), dtype=bool)
    mask[rect.top : rect.bottom, rect.left : rect.right] = True
    return mask


def core_rect(rect: Rect, share: float) -> Rect:
    """The box scaled about its centre to ``share`` of its area (each side by ``sqrt(share)``)."""
    factor = math.sqrt(share)
    height, width = rect.bottom - rect.top, rect.right - rect.left
    core_h, core_w = max(1, round(height * factor)), max(1, round(width * factor))
    top, left = rect.top + (height - core_h) // 2, rect.left + (width - core_w) // 2
    return Rect(top, top + core_h, left, left + core_w)


def occluded_mask(
    rect: Rect, nearer: list[Rect], min_share: float = MIN_VISIBLE_SHARE
) -> npt.NDArray[np.float32]:
    """The mask of a region of box ``rect`` behind the boxes ``nearer``.

    Args:
        rect: The region's box on the 90x90 grid.
        nearer: Boxes of the regions nearer to the viewer.
        min_share: The least share of its box the region keeps.

    Returns:
        float32 (90, 90) in {0, 1}.
    """
    box = _box(rect)
    visible = box.copy()
    for other in nearer:
        visible &= ~_box(other)
    area = int(box.sum())
    if area and visible.sum() < min_share * area:
        visible |= _box(core_rect(rect, min_share))
    return visible.astype(np.float32)


def occlusion_conditions(
    canvas: Canvas, conditions: list[RegionCondition]
) -> list[RegionCondition]:
    """The regions of ``canvas.process()`` with occlusion masks (the global region unchanged).

    Args:
        canvas: The canvas the conditions come from (for each local's distance).
        conditions: ``canvas.process().conditions``.

    Returns:
        The same conditions, each local one with nearer boxes removed from its mask.
    """
    locals_ = canvas.local_descriptions
    out = []
    for condition in conditions:
        if condition.local_index is None:
            out.append(condition)
            continue
        distance = locals_[condition.local_index].distance_to_viewer
        nearer = [local.rect for local in locals_ if local.distance_to_viewer < distance]
        mask = occluded_mask(condition.rect, nearer)
        out.append(dataclasses.replace(condition, mask=mask))
    return out


def region_conditions(canvas: Canvas, mode: MaskMode = "omost") -> list[RegionCondition]:
    """The canvas's regional conditions under a mask mode (``omost``: exactly Omost's)."""
    conditions = canvas.process().conditions
    return conditions if mode == "omost" else occlusion_conditions(canvas, conditions)
