from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from omost_schema import Canvas, debug_png, sketch_image
from omost_schema.canvas import GlobalDescription, LocalDescription
from omost_schema.vocab import COLORS
from PIL import Image
from strategies import canvases


def test_sketch_image_stretches_to_requested_size(dragon: Canvas) -> None:
    image = sketch_image(dragon, 1152, 896)
    assert image.shape == (896, 1152, 3)
    assert image.dtype == np.uint8


def test_sketch_image_doubling_repeats_each_cell(dragon: Canvas) -> None:
    sketch = dragon.process().initial_image
    wide = sketch_image(dragon, 180, 90)
    assert (wide[:, 0::2] == sketch).all()
    assert (wide[:, 1::2] == sketch).all()
    tall = sketch_image(dragon, 90, 270)
    assert (tall[0::3] == sketch).all()
    assert (tall[2::3] == sketch).all()


def test_sketch_image_at_grid_size_is_the_sketch(dragon: Canvas) -> None:
    assert (sketch_image(dragon, 90, 90) == dragon.process().initial_image).all()


@pytest.mark.parametrize(("width", "height"), [(0, 10), (10, 0), (8193, 10)])
def test_sketch_image_refuses_bad_sizes(dragon: Canvas, width: int, height: int) -> None:
    with pytest.raises(ValueError, match="size"):
        sketch_image(dragon, width, height)


def test_debug_png_is_a_png_of_requested_size(dragon: Canvas) -> None:
    data = debug_png(dragon, 320, 200)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        assert image.size == (320, 200)
        assert image.mode == "RGB"
        pixels = np.asarray(image)
    # Outlines are drawn in white; the sketch itself has no white.
    assert (pixels == 255).all(axis=-1).any()
    assert not (dragon.process().initial_image == 255).all(axis=-1).any()


def test_debug_png_default_size(dragon: Canvas) -> None:
    with Image.open(io.BytesIO(debug_png(dragon))) as image:
        assert image.size == (576, 576)


def _one_box_canvas(global_color: str, local_color: str) -> Canvas:
    return Canvas(
        global_description=GlobalDescription(
            description="a room",
            detailed_descriptions=[],
            tags="",
            HTML_web_color_name=global_color,
        ),
        local_descriptions=[
            LocalDescription(
                location="in the center",
                offset="no offset",
                area="a small square area",
                distance_to_viewer=1.0,
                description="a box",
                detailed_descriptions=[],
                tags="",
                atmosphere="",
                style="",
                quality_meta="",
                HTML_web_color_name=local_color,
            )
        ],
    )


def test_sketch_blend_matches_omost_to_the_last_bit() -> None:
    sketch = _one_box_canvas("blueviolet", "darkkhaki").process().initial_image
    # 0.7 * (189, 183, 107) + 0.3 * (138, 43, 226): green is 141.0, which all-float32 arithmetic
    # truncates to 140.
    assert sketch[45, 45].tolist() == [173, 141, 142]
    assert sketch[0, 0].tolist() == [138, 43, 226]


def _to_float32(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return values.astype(np.float32).astype(np.float64)


def _reference_sketch(canvas: Canvas) -> npt.NDArray[np.uint8]:
    """Section 4 of the spec in float64, rounding to float32 only where Omost stores a value."""
    image = np.empty((90, 90, 3), dtype=np.float64)
    image[:] = COLORS[canvas.global_description.HTML_web_color_name]
    farthest_first = sorted(
        canvas.local_descriptions, key=lambda local: local.distance_to_viewer, reverse=True
    )
    for local in farthest_first:
        top, bottom, left, right = local.rect
        colour_term = 0.7 * np.array(COLORS[local.HTML_web_color_name], dtype=np.float64)
        # Omost's sketch lives in a float32 array: 0.3 * box is a float32 product, the sum is
        # stored as float32.
        below = _to_float32(_to_float32(np.array(0.3)) * image[top:bottom, left:right])
        image[top:bottom, left:right] = _to_float32(colour_term + below)
    return np.clip(image, 0, 255).astype(np.uint8)


@settings(max_examples=200, deadline=None)
@given(canvases(max_locals=6))
def test_sketch_equals_an_independent_implementation(canvas: Canvas) -> None:
    assert np.array_equal(canvas.process().initial_image, _reference_sketch(canvas))
