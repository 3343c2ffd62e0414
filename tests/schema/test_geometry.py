from __future__ import annotations

import pytest
from omost_schema import AREAS, GRID_SIZE, LOCATIONS, OFFSETS, Rect, pixel_rect, region_rect

# The spec's tables, written out independently of the implementation.
CENTRES = {
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
SHIFTS = {
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
SIZES = {
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


@pytest.mark.parametrize(("location", "centre"), CENTRES.items())
def test_region_rect_centres_boxes_on_each_location(location: str, centre: tuple[int, int]) -> None:
    # A 20x20 box does not exist; a small square (50x50) is centred on the location, so its
    # centre is the mean of its unclamped edges.
    x, y = centre
    rect = region_rect(location, "no offset", "a small square area")  # type: ignore[arg-type]
    assert rect == Rect(max(0, y - 25), min(90, y + 25), max(0, x - 25), min(90, x + 25))


@pytest.mark.parametrize(("offset", "shift"), SHIFTS.items())
def test_region_rect_shifts_by_ten_cells_per_offset(offset: str, shift: tuple[int, int]) -> None:
    dx, dy = shift
    rect = region_rect("in the center", offset, "a small square area")  # type: ignore[arg-type]
    assert rect == Rect(20 + dy, 70 + dy, 20 + dx, 70 + dx)


@pytest.mark.parametrize(("area", "size"), SIZES.items())
def test_region_rect_sizes_boxes_by_area(area: str, size: tuple[int, int]) -> None:
    w, h = size
    rect = region_rect("in the center", "no offset", area)  # type: ignore[arg-type]
    assert (rect.right - rect.left, rect.bottom - rect.top) == (w, h)
    assert rect.area == w * h


@pytest.mark.parametrize(
    ("location", "offset", "area", "expected"),
    [
        ("in the center", "no offset", "a large square area", Rect(10, 80, 10, 80)),
        ("on the left", "no offset", "a large horizontal area", Rect(15, 75, 0, 60)),
        ("on the top", "no offset", "a large horizontal area", Rect(0, 45, 0, 90)),
        ("on the bottom", "no offset", "a large horizontal area", Rect(45, 90, 0, 90)),
        (
            "on the bottom-right",
            "slightly to the lower-right",
            "a large vertical area",
            Rect(40, 90, 55, 90),
        ),
        (
            "on the top-left",
            "slightly to the upper-left",
            "a small vertical area",
            Rect(0, 35, 0, 25),
        ),
    ],
)
def test_region_rect_clamps_to_grid(location: str, offset: str, area: str, expected: Rect) -> None:
    assert region_rect(location, offset, area) == expected  # type: ignore[arg-type]


def test_region_rect_all_combinations_match_formula_and_give_661_boxes() -> None:
    boxes = set()
    for location in LOCATIONS:
        for offset in OFFSETS:
            for area in AREAS:
                rect = region_rect(location, offset, area)
                x, y = CENTRES[location]
                dx, dy = SHIFTS[offset]
                w, h = SIZES[area]
                cx, cy = x + dx, y + dy
                clamp = lambda v: max(0, min(GRID_SIZE, v))  # noqa: E731
                assert rect == (
                    clamp(cy - h // 2),
                    clamp(cy + h // 2),
                    clamp(cx - w // 2),
                    clamp(cx + w // 2),
                )
                boxes.add(rect)
    assert len(boxes) == 661


def test_region_rect_unknown_name_raises_key_error() -> None:
    with pytest.raises(KeyError):
        region_rect("top left", "no offset", "a large square area")  # type: ignore[arg-type]


def test_pixel_rect_scales_rows_by_height_and_columns_by_width() -> None:
    assert pixel_rect(Rect(15, 75, 0, 60), 1152, 896) == Rect(149, 747, 0, 768)


def test_pixel_rect_full_grid_is_full_image() -> None:
    assert pixel_rect(Rect(0, 90, 0, 90), 1152, 896) == Rect(0, 896, 0, 1152)


def test_pixel_rect_shared_edges_stay_shared() -> None:
    upper = pixel_rect(Rect(0, 45, 0, 90), 1000, 777)
    lower = pixel_rect(Rect(45, 90, 0, 90), 1000, 777)
    assert upper.bottom == lower.top


@pytest.mark.parametrize(("width", "height"), [(0, 10), (10, 0), (-5, 5)])
def test_pixel_rect_refuses_non_positive_size(width: int, height: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        pixel_rect(Rect(0, 90, 0, 90), width, height)
