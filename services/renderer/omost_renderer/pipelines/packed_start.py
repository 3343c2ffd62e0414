"""Pixels and masks the packed-token (MM-DiT) families share: resized starts, packed repaint masks.

FLUX.1 and FLUX.2 both see latents as 2x2-packed tokens (``packed_latents.pack``), so an edit's
repaint mask is packed the same way as the latents (feature by feature, so the inpainting blend
works token by token), and both take the hires pass's and an init image's start from LANCZOS-resized
pixels. Both pipelines use this module.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from omost_renderer.pipelines.packed_latents import pack
from omost_renderer.pipelines.render_start import RepaintArea
from omost_renderer.pipelines.vae_codec import uint8_to_pixels


def resized_pixels(images: Sequence[Image.Image], width: int, height: int) -> torch.Tensor:
    """Images resized (LANCZOS) to ``width`` x ``height`` as VAE input.

    Args:
        images: RGB (or convertible) images of any size.
        width: Target width in pixels.
        height: Target height in pixels.

    Returns:
        float32 (len(images), 3, height, width) in [-1, 1].
    """
    resized = [im.convert("RGB").resize((width, height), Image.Resampling.LANCZOS) for im in images]
    return torch.cat([uint8_to_pixels(np.asarray(im)) for im in resized])


def packed_repaint_mask(
    repaint: RepaintArea, width: int, height: int, scale_factor: int, channels: int
) -> torch.Tensor:
    """The repaint mask of a ``width`` x ``height`` image, packed like its latents.

    Args:
        repaint: What the edit repaints.
        width: Image width in pixels.
        height: Image height in pixels.
        scale_factor: The VAE's pixels per latent cell.
        channels: Latent channels (each packed token has ``4 * channels`` features).

    Returns:
        float32 (1, N, 4 * channels) in [0, 1] on the CPU: 1 repaints, 0 keeps.
    """
    cells = repaint.latent_mask(width, height, scale_factor)
    mask = torch.from_numpy(cells)[None, None].expand(1, channels, -1, -1).contiguous()
    return pack(mask)
