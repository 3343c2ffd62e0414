"""Exact Omost box geometry on the 90x90 grid, and its mapping to pixels.

A box is ``(top, bottom, left, right)``: rows first, end-exclusive, so the region of a box is
``mask[top:bottom, left:right]``. The grid is stretched to the image's aspect ratio.
"""

from typing import NamedTuple

from omost_schema.vocab import Area, Location, Offset

GRID_SIZE = 90

_LOCATION_CENTERS: dict[str, tuple[int, int]] = {
    "in the center": (45, 45),
    "on the left": (15, 45),
    "on the right": (75, 45),
    "on the top": (45, 15),
    "on the bottom": (45, 75),
    "on the top-left": (15, 15),
    "on the top-right": (75, 15),
    "on the bottom-left": (15, 75),
    "on the bottom-right": (75, 75),
}
_OFFSETS: dict[str, tuple[int, int]] = {
    "no offset": (0, 0),
    "slightly to the left": (-10, 0),
    "slightly to the right": (10, 0),
    "slightly to the upper": (0, -10),
    "slightly to the lower": (0, 10),
    "slightly to the upper-left": (-10, -10),
    "slightly to the upper-right": (10, -10),
    "slightly to the lower-left": (-10, 10),
    "slightly to the lower-right": (10, 10),
}
_AREA_SIZES: dict[str, tuple[int, int]] = {
    "a small square area": (50, 50),
    "a small vertical area": (40, 60),
    "a small horizontal area": (60, 40),
    "a medium-sized square area": (60, 60),
    "a medium-sized vertical area": (50, 80),
    "a medium-sized horizontal area": (80, 50),
    "a large square area": (70, 70),
    "a large vertical area": (60, 90),
    "a large horizontal area": (90, 60),
}


class Rect(NamedTuple):
    """A box, rows first and end-exclusive: ``mask[top:bottom, left:right]``."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def area(self) -> int:
        """Number of cells (or pixels) inside the box."""
        return max(0, self.bottom - self.top) * max(0, self.right - self.left)


def _clamp(value: int) -> int:
    return max(0, min(GRID_SIZE, value))


def region_rect(location: Location, offset: Offset, area: Area) -> Rect:
    """Return the box of a local description on the 90x90 grid, exactly as Omost computes it.

    Args:
        location: One of the nine locations (the box centre).
        offset: One of the nine offsets (a shift of 10 cells).
        area: One of the nine areas (the box width and height).

    Returns:
        ``Rect(top, bottom, left, right)``, each clamped to ``[0, 90]``.

    Raises:
        KeyError: If a name is not in the vocabulary (use ``correct_name`` first).
    """
    x, y = _LOCATION_CENTERS[location]
    dx, dy = _OFFSETS[offset]
    w, h = _AREA_SIZES[area]
    cx, cy = x + dx, y + dy
    return Rect(_clamp(cy - h // 2), _clamp(cy + h // 2), _clamp(cx - w // 2), _clamp(cx + w // 2))


def pixel_rect(rect: Rect, width: int, height: int) -> Rect:
    """Scale a grid box to an image of ``width`` x ``height`` pixels.

    Edges are rounded to the nearest pixel, so boxes that share an edge on the grid share it in
    pixels too, and the full grid maps to the full image.

    Args:
        rect: A box on the 90x90 grid.
        width: Image width in pixels (> 0).
        height: Image height in pixels (> 0).

    Returns:
        The box in pixel coordinates, ``Rect(top, bottom, left, right)``, end-exclusive.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    return Rect(
        round(rect.top * height / GRID_SIZE),
        round(rect.bottom * height / GRID_SIZE),
        round(rect.left * width / GRID_SIZE),
        round(rect.right * width / GRID_SIZE),
    )
