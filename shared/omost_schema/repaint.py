"""The repaint area of an edit: changed boxes, dilated by a margin and feathered, on any grid.

A renderer computes the mask at its latent resolution (``cell_px`` pixels per latent cell: 8 for
SDXL's and FLUX's VAEs); the API draws the same mask over the sketch for people to see. Values
are 1.0 where the model repaints freely, 0.0 where the base image is kept, and a linear ramp in
the feather band between them.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from PIL import Image

from omost_schema.geometry import Rect, pixel_rect
from omost_schema.sketch import debug_png

if TYPE_CHECKING:
    from omost_schema.canvas import Canvas

#: Pixels the repaint area reaches beyond the changed boxes (fully repainted).
REPAINT_MARGIN_PX = 32
#: Width in pixels of the soft edge beyond the margin, where repaint fades into the base.
REPAINT_FEATHER_PX = 32
#: Pixels per latent cell of the VAEs the service runs (SDXL's and FLUX's shrink 8x).
LATENT_CELL_PX = 8
#: Colour and opacity of the repaint area drawn over the sketch.
_OVERLAY_RGB = (255, 40, 40)
_OVERLAY_ALPHA = 0.55


def repaint_mask(
    rects: list[Rect],
    width: int,
    height: int,
    *,
    cell_px: int = LATENT_CELL_PX,
    margin_px: float = REPAINT_MARGIN_PX,
    feather_px: float = REPAINT_FEATHER_PX,
) -> npt.NDArray[np.float32]:
    """The repaint mask of grid boxes on a ``cell_px`` grid over a ``width`` x ``height`` image.

    Each cell's value comes from the Chebyshev distance ``d`` (in pixels) from its centre to the
    nearest box: 1.0 for ``d <= margin_px``, falling linearly to 0.0 at
    ``margin_px + feather_px``.

    Args:
        rects: Boxes on the 90x90 grid (the old and new boxes of changed regions).
        width: Image width in pixels.
        height: Image height in pixels.
        cell_px: Pixels per cell (8: one latent cell; 1: the image itself).
        margin_px: Dilation of every box.
        feather_px: Width of the soft edge (0: a hard mask).

    Returns:
        float32 (height // cell_px, width // cell_px) in [0, 1]; all zeros without boxes.
    """
    rows, cols = height // cell_px, width // cell_px
    mask = np.zeros((rows, cols), dtype=np.float32)
    centre_y = (np.arange(rows, dtype=np.float64) + 0.5) * cell_px
    centre_x = (np.arange(cols, dtype=np.float64) + 0.5) * cell_px
    for rect in rects:
        top, bottom, left, right = pixel_rect(rect, width, height)
        dy = np.maximum(np.maximum(top - centre_y, centre_y - bottom), 0.0)
        dx = np.maximum(np.maximum(left - centre_x, centre_x - right), 0.0)
        distance = np.maximum(dy[:, None], dx[None, :]) - margin_px
        if feather_px > 0:
            value = np.clip(1.0 - distance / feather_px, 0.0, 1.0)
        else:
            value = (distance <= 0).astype(np.float64)
        mask = np.maximum(mask, value.astype(np.float32))
    return mask


def upsample_mask(mask: npt.NDArray[np.float32], width: int, height: int) -> Image.Image:
    """The mask as an 8-bit image of ``width`` x ``height`` (nearest cells, no new softness)."""
    image = Image.fromarray((mask * 255.0).round().astype(np.uint8), mode="L")
    return image.resize((width, height), Image.Resampling.NEAREST)


def repaint_overlay_png(
    canvas: Canvas, mask: npt.NDArray[np.float32], width: int, height: int
) -> bytes:
    """The labelled sketch of ``canvas`` with the repaint area tinted red, as PNG.

    Args:
        canvas: The edited canvas.
        mask: A repaint mask (any grid over the image).
        width: Picture width in pixels.
        height: Picture height in pixels.

    Returns:
        The PNG file's bytes.
    """
    sketch = Image.open(io.BytesIO(debug_png(canvas, width, height))).convert("RGB")
    alpha = np.asarray(upsample_mask(mask, width, height), dtype=np.float32)[..., None] / 255.0
    tint = np.array(_OVERLAY_RGB, dtype=np.float32)
    base = np.asarray(sketch, dtype=np.float32)
    mixed = base * (1.0 - _OVERLAY_ALPHA * alpha) + tint * (_OVERLAY_ALPHA * alpha)
    buffer = io.BytesIO()
    Image.fromarray(mixed.round().clip(0, 255).astype(np.uint8), mode="RGB").save(buffer, "PNG")
    return buffer.getvalue()
