"""Omost's colour-sketch start image: the 90x90 sketch blurred, then stretched to the image size.

Omost blurs the sketch before encoding it (reflect padding of 40 cells, then an 81x81 box
average, which keeps it 90x90), so the start latent carries the layout's colours as soft blobs
rather than hard-edged boxes, and resizes it with plain nearest-neighbour interpolation. The
result stays float (it is never quantised back to uint8) and is encoded once per render.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from torch.nn import functional

#: Reflect padding of the sketch, in grid cells; the average window is ``2 * SKETCH_BLUR + 1``.
SKETCH_BLUR = 40


def blurred_sketch(sketch: npt.NDArray[np.uint8]) -> torch.Tensor:
    """The sketch as float in [-1, 1], reflect-padded by 40 and averaged over 81x81 cells.

    Args:
        sketch: uint8 (90, 90, 3), ``canvas.process().initial_image``.

    Returns:
        float32 (1, 3, 90, 90).
    """
    pixels = torch.tensor(np.asarray(sketch))[None].movedim(-1, 1) / 127.5 - 1.0
    padded = functional.pad(pixels, (SKETCH_BLUR,) * 4, mode="reflect")
    return functional.avg_pool2d(padded, kernel_size=2 * SKETCH_BLUR + 1, stride=1)


def sketch_start_pixels(sketch: npt.NDArray[np.uint8], height: int, width: int) -> torch.Tensor:
    """The blurred sketch resized to the image with nearest-neighbour interpolation.

    Args:
        sketch: uint8 (90, 90, 3).
        height: Image height in pixels.
        width: Image width in pixels.

    Returns:
        float32 (1, 3, height, width) in [-1, 1], ready for the VAE encoder.
    """
    # torch's default "nearest" (not "nearest-exact"), as Omost resizes it.
    return functional.interpolate(blurred_sketch(sketch), (height, width), mode="nearest")
