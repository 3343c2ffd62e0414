from __future__ import annotations

import io

import numpy as np
import pytest
from omost_schema import Canvas, debug_png, sketch_image
from PIL import Image


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
