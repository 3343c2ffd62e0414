"""Occlusion masks: nearer boxes leave the masks of farther local regions, with a floor."""

from __future__ import annotations

import numpy as np
from omost_schema import Canvas, GlobalDescription, LocalDescription, Rect
from omost_schema.occlusion import (
    MIN_VISIBLE_SHARE,
    core_rect,
    occluded_mask,
    occlusion_conditions,
    region_conditions,
)


def _local(location: str, area: str, distance: float) -> LocalDescription:
    return LocalDescription(
        location=location, offset="no offset", area=area, distance_to_viewer=distance,
        description=f"thing {location}", detailed_descriptions=[], tags="", atmosphere="",
        style="", quality_meta="", HTML_web_color_name="red",
    )  # fmt: skip


def _canvas(*locals_: LocalDescription) -> Canvas:
    glob = GlobalDescription(description="a scene", detailed_descriptions=[], tags="",
                             HTML_web_color_name="white")  # fmt: skip
    return Canvas(global_description=glob, local_descriptions=list(locals_))


def _by_index(conditions: list) -> dict[int | None, np.ndarray]:  # type: ignore[type-arg]
    return {c.local_index: c.mask for c in conditions}


def test_omost_mode_is_exactly_omosts_masks() -> None:
    canvas = _canvas(_local("in the center", "a large square area", 5.0),
                     _local("in the center", "a small square area", 1.0))  # fmt: skip
    ours = region_conditions(canvas, "omost")
    omost = canvas.process().conditions
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(ours, omost, strict=True))


def test_a_nearer_box_is_removed_from_a_farther_region_only() -> None:
    far, near = (
        _local("on the left", "a large square area", 5.0),
        _local("in the center", "a small square area", 1.0),
    )
    canvas = _canvas(far, near)
    masks = _by_index(occlusion_conditions(canvas, canvas.process().conditions))
    top, bottom, left, right = near.rect
    assert not masks[0][top:bottom, left:right].any()  # the far region lost the near box
    assert masks[1].sum() == near.rect.area  # the near region keeps its whole box
    assert (masks[None] == 1).all()  # the global region keeps everything
    overlap_free = far.rect.area - masks[0].sum()
    assert overlap_free > 0


def test_equal_distances_hide_nothing() -> None:
    canvas = _canvas(_local("on the left", "a large square area", 2.0),
                     _local("in the center", "a small square area", 2.0))  # fmt: skip
    ours = occlusion_conditions(canvas, canvas.process().conditions)
    assert all(
        np.array_equal(a.mask, b.mask)
        for a, b in zip(ours, canvas.process().conditions, strict=True)
    )


def test_a_fully_covered_region_keeps_its_core() -> None:
    box = Rect(30, 60, 30, 60)
    mask = occluded_mask(box, [Rect(0, 90, 0, 90)])
    assert mask.sum() >= MIN_VISIBLE_SHARE * box.area * 0.9
    core = core_rect(box, MIN_VISIBLE_SHARE)
    assert (mask[core.top : core.bottom, core.left : core.right] == 1).all()
    assert mask.sum() == core.area


def test_a_partly_covered_region_above_the_floor_keeps_only_its_visible_part() -> None:
    box = Rect(0, 40, 0, 40)
    mask = occluded_mask(box, [Rect(0, 40, 0, 20)])  # half covered
    assert mask.sum() == 40 * 20
    assert not mask[:, :20].any()
