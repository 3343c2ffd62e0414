"""Pictures of a canvas: the colour sketch at any size and a labelled debug picture as PNG."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

from omost_schema.conditions import clean_subprompt, sorted_locals
from omost_schema.geometry import GRID_SIZE, pixel_rect

if TYPE_CHECKING:
    from omost_schema.canvas import Canvas

_MAX_SIDE = 8192
_LABEL_CHARS = 40


def _check_size(width: int, height: int) -> None:
    if not (0 < width <= _MAX_SIDE and 0 < height <= _MAX_SIDE):
        raise ValueError(f"size must be within 1..{_MAX_SIDE} on each side, got {width}x{height}")


def _grid_index(size: int) -> npt.NDArray[np.intp]:
    # Nearest-exact sampling (pixel centres), the same rule the renderer uses to resize masks.
    return np.minimum(((np.arange(size) + 0.5) * GRID_SIZE / size).astype(np.intp), GRID_SIZE - 1)


def sketch_image(canvas: Canvas, width: int, height: int) -> npt.NDArray[np.uint8]:
    """Return the colour sketch stretched to ``width`` x ``height``.

    Args:
        canvas: The canvas.
        width: Width in pixels (1..8192).
        height: Height in pixels (1..8192).

    Returns:
        uint8 (height, width, 3): the 90x90 sketch resampled nearest-exact.
    """
    _check_size(width, height)
    sketch = canvas.process().initial_image
    return sketch[_grid_index(height)][:, _grid_index(width)]


def debug_png(canvas: Canvas, width: int = 576, height: int = 576) -> bytes:
    """Return a PNG of the sketch with each local box outlined and labelled.

    Boxes are drawn farthest first, so a nearer box's outline and label are on top.

    Args:
        canvas: The canvas.
        width: Width in pixels (1..8192).
        height: Height in pixels (1..8192).

    Returns:
        The PNG file's bytes.
    """
    image = Image.fromarray(sketch_image(canvas, width, height), mode="RGB")
    draw = ImageDraw.Draw(image)
    for index, local in sorted_locals(canvas):
        top, bottom, left, right = pixel_rect(local.rect, width, height)
        draw.rectangle((left, top, right - 1, bottom - 1), outline=(255, 255, 255), width=2)
        label = f"{index}: {clean_subprompt(local.description)[:_LABEL_CHARS]}"
        text_box = draw.textbbox((left + 4, top + 4), label)
        draw.rectangle(text_box, fill=(0, 0, 0))
        draw.text((left + 4, top + 4), label, fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
