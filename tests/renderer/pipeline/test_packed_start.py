"""The packed-token families' shared start pixels and repaint masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omost_renderer.pipelines.packed_latents import check_packed_size, token_grid, unpack
from omost_renderer.pipelines.packed_start import (
    KeptPart,
    edit_base_tokens,
    packed_repaint_mask,
    pass_start,
    resized_pixels,
)
from omost_renderer.pipelines.render_start import BASE_PASS, HIRES_PASS, RenderStart, RepaintArea
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


def test_the_token_grid_and_the_size_check_count_16_pixel_cells() -> None:
    assert token_grid(64, 96, 8) == (4, 6)
    check_packed_size(96, 64, 8)
    with pytest.raises(ValueError, match="multiples of 16"):
        check_packed_size(96, 72, 8)


def test_edit_base_tokens_are_the_stored_pass_checked_against_the_grid() -> None:
    stored = np.arange(4 * 12, dtype=np.float32).reshape(4, 12)
    start = RenderStart(latents={BASE_PASS: stored})
    tokens = edit_base_tokens(start, BASE_PASS, 4, 12, torch.device("cpu"))
    assert tokens is not None
    assert torch.equal(tokens, torch.from_numpy(stored)[None])
    assert edit_base_tokens(start, HIRES_PASS, 4, 12, torch.device("cpu")) is None
    with pytest.raises(ValueError, match="this pass needs"):
        edit_base_tokens(start, BASE_PASS, 9, 12, torch.device("cpu"))


def test_a_pass_starts_by_interpolation_and_an_edit_keeps_its_base_outside() -> None:
    init, noise = torch.zeros(1, 4, 2), torch.ones(1, 4, 2)
    sigma = torch.tensor(0.25)
    latents, blend = pass_start(init, noise, sigma, 3, None)
    assert blend is None
    assert torch.equal(latents, torch.full((1, 4, 2), 0.25))
    mask = torch.tensor([1.0, 1.0, 0.0, 0.0])[None, :, None].expand(1, 4, 2)
    kept = KeptPart(base=torch.full((1, 4, 2), 2.0), noise=torch.zeros(1, 4, 2), mask=mask)
    latents, blend = pass_start(init, noise, sigma, 3, kept)
    assert blend is not None
    # Repainted tokens start from the interpolation, kept ones from the base re-noised.
    assert torch.equal(latents[0, :2], torch.full((2, 2), 0.25))
    assert torch.equal(latents[0, 2:], torch.full((2, 2), 1.5))
