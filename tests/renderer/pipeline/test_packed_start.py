"""The packed-token families' shared start pixels and repaint masks."""

from __future__ import annotations

import numpy as np
import torch
from omost_renderer.pipelines.packed_latents import unpack
from omost_renderer.pipelines.packed_start import packed_repaint_mask, resized_pixels
from omost_renderer.pipelines.render_start import RepaintArea
from PIL import Image


def test_the_packed_mask_unpacks_to_the_latent_mask_on_every_channel() -> None:
    pixels = np.zeros((128, 64), dtype=np.float32)
    pixels[:32, :32] = 1.0
    repaint = RepaintArea(pixels=pixels)
    packed = packed_repaint_mask(repaint, 64, 128, 8, channels=3)
    # A 64x128 image: an 8x16 latent, 4x8 tokens of 4 * 3 features.
    assert packed.shape == (1, 32, 12)
    cells = torch.from_numpy(repaint.latent_mask(64, 128, 8))
    assert torch.equal(unpack(packed, 16, 8)[0], cells.expand(3, -1, -1))
    assert cells[:4, :4].min() == 1
    assert cells[4:].max() == 0


def test_resized_pixels_are_vae_input_at_the_new_size() -> None:
    red = Image.new("RGB", (10, 20), (255, 0, 0))
    grey = Image.new("L", (30, 30), 128)
    pixels = resized_pixels([red, grey], 48, 32)
    assert pixels.shape == (2, 3, 32, 48)
    assert pixels.dtype == torch.float32
    assert torch.allclose(pixels[0, :, 5, 5], torch.tensor([1.0, -1.0, -1.0]))
    torch.testing.assert_close(pixels[1], torch.full((3, 32, 48), 128 / 127.5 - 1))
