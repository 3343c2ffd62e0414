"""The repaint mask: changed boxes dilated by a margin, feathered, on the latent grid."""

from __future__ import annotations

import io

import numpy as np
from omost_schema import Canvas, GlobalDescription, Rect
from omost_schema.repaint import repaint_mask, repaint_overlay_png
from PIL import Image

BOX = Rect(30, 60, 30, 60)  # the middle third of the grid


def test_no_boxes_keep_everything() -> None:
    assert not repaint_mask([], 256, 128).any()


def test_mask_is_on_the_latent_grid() -> None:
    assert repaint_mask([BOX], 256, 128).shape == (16, 32)


def test_the_box_and_its_margin_repaint_fully_and_the_feather_ramps_down() -> None:
    # 720 px: the box is pixels 240..480; margin 32 and feather 32 px, one cell per 8 px.
    row = repaint_mask([BOX], 720, 720)[45]
    centres = (np.arange(90) + 0.5) * 8
    assert (row[(centres >= 240 - 32) & (centres <= 480 + 32)] == 1.0).all()
    assert (row[(centres <= 240 - 64) | (centres >= 480 + 64)] == 0.0).all()
    band = row[(centres > 480 + 32) & (centres < 480 + 64)]
    assert (np.diff(band) < 0).all()
    assert (band > 0).all()
    assert (band < 1).all()


def test_a_hard_mask_without_feather_and_margin_is_the_box() -> None:
    mask = repaint_mask([BOX], 90, 90, cell_px=1, margin_px=0, feather_px=0)
    expected = np.zeros((90, 90), dtype=np.float32)
    expected[30:60, 30:60] = 1.0
    # Cell centres on the box's edge line count as inside (distance 0).
    assert (mask[30:60, 30:60] == 1.0).all()
    assert mask.sum() - expected.sum() < 2 * 90


def test_union_of_boxes() -> None:
    left, right = Rect(0, 10, 0, 10), Rect(80, 90, 80, 90)
    both = repaint_mask([left, right], 720, 720)
    assert (
        both == np.maximum(repaint_mask([left], 720, 720), repaint_mask([right], 720, 720))
    ).all()


def test_overlay_tints_only_the_repaint_area() -> None:
    glob = GlobalDescription(description="x", detailed_descriptions=[], tags="",
                             HTML_web_color_name="white")  # fmt: skip
    canvas = Canvas(global_description=glob)
    mask = repaint_mask([Rect(0, 45, 0, 45)], 64, 64, margin_px=0, feather_px=0)
    png = np.asarray(Image.open(io.BytesIO(repaint_overlay_png(canvas, mask, 64, 64))))
    assert tuple(png[5, 5]) != (255, 255, 255)
    assert tuple(png[60, 60]) == (255, 255, 255)
