from __future__ import annotations

import numpy as np
import pytest
import torch
from omost_renderer.pipelines.sketch_start import blurred_sketch, sketch_start_pixels


def _two_colours() -> np.ndarray:
    """Left half (columns 0..44) white, right half black."""
    sketch = np.zeros((90, 90, 3), dtype=np.uint8)
    sketch[:, :45] = 255
    return sketch


def test_blur_averages_81_columns_with_reflected_edges() -> None:
    row = blurred_sketch(_two_colours())[0, 0, 45]
    # Column 0's window reflects into columns 1..40, all white.
    assert float(row[0]) == pytest.approx(1.0)
    assert float(row[89]) == pytest.approx(-1.0)
    # Column 44 sees columns 4..84: 41 white (+1) and 40 black (-1) cells.
    assert float(row[44]) == pytest.approx(1 / 81, abs=1e-6)
    assert float(row[45]) == pytest.approx(-1 / 81, abs=1e-6)
    # The window reaches 40 columns: column 4 is the last pure white one.
    assert float(row[4]) == pytest.approx(1.0)
    assert float(row[5]) == pytest.approx(79 / 81, abs=1e-6)
    assert float(row[5]) < 1.0


def test_blur_keeps_the_grid_and_rows_of_a_column_split() -> None:
    blurred = blurred_sketch(_two_colours())
    assert blurred.shape == (1, 3, 90, 90)
    assert blurred.dtype == torch.float32
    # Every row is the same, and every channel (the colours are grey levels).
    assert bool((blurred == blurred[:, :1, :1]).all())


def test_start_pixels_resize_the_blurred_sketch_with_nearest() -> None:
    blurred = blurred_sketch(_two_colours())
    pixels = sketch_start_pixels(_two_colours(), 64, 128)
    assert pixels.shape == (1, 3, 64, 128)
    # torch's "nearest": output column j reads input column floor(j * 90 / 128).
    columns = (torch.arange(128) * 90 / 128).floor().long()
    torch.testing.assert_close(pixels[0, 0, 0], blurred[0, 0, 0, columns])
