"""Latents as MM-DiT token sequences: 2x2 patches packed into tokens, their positions, previews.

FLUX (and Qwen-Image) see a VAE latent ``(B, C, h, w)`` as ``(h / 2) * (w / 2)`` tokens of
``4 * C`` features, row-major, each patch's features ordered ``(C, 2, 2)`` as diffusers packs them.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from omost_renderer.pipelines.preview import latent_preview

#: Side of a packed patch, in latents.
PATCH = 2

# An approximate linear map from FLUX.1's 16 latent channels (model-space latents: the VAE's
# scale and shift applied) to RGB, as used for FLUX previews elsewhere; it only has to show
# composition and colour while sampling.
_FLUX_TO_RGB = torch.tensor(
    [
        [-0.0346, 0.0244, 0.0681],
        [0.0034, 0.0210, 0.0687],
        [0.0275, -0.0668, -0.0433],
        [-0.0174, 0.0160, 0.0617],
        [0.0859, 0.0721, 0.0329],
        [0.0004, 0.0383, 0.0115],
        [0.0405, 0.0861, 0.0915],
        [-0.0236, -0.0185, -0.0259],
        [-0.0245, 0.0250, 0.1180],
        [0.1008, 0.0755, -0.0421],
        [-0.0515, 0.0201, 0.0011],
        [0.0428, -0.0012, -0.0036],
        [0.0817, 0.0765, 0.0749],
        [-0.1264, -0.0522, -0.1103],
        [-0.0280, -0.0881, -0.0499],
        [-0.1262, -0.0982, -0.0778],
    ]
)
_FLUX_RGB_BIAS = torch.tensor([-0.0329, -0.0718, -0.0851])


def pack(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, h/2 * w/2, 4C), diffusers' ``_pack_latents``."""
    b, c, h, w = latents.shape
    x = latents.view(b, c, h // PATCH, PATCH, w // PATCH, PATCH).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // PATCH) * (w // PATCH), c * PATCH * PATCH)


def unpack(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, h/2 * w/2, 4C) -> (B, C, h, w) for a latent of ``height`` x ``width``."""
    b, _, features = tokens.shape
    c = features // (PATCH * PATCH)
    x = tokens.view(b, height // PATCH, width // PATCH, c, PATCH, PATCH).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, height, width)


def token_grid(height: int, width: int, scale_factor: int) -> tuple[int, int]:
    """Token rows and columns of a ``height`` x ``width`` image (VAE ``scale_factor``, 2x2)."""
    cell = scale_factor * PATCH
    return height // cell, width // cell


def check_packed_size(width: int, height: int, scale_factor: int) -> None:
    """Refuse an image size the packed latent cannot hold.

    Raises:
        ValueError: When width or height is not a multiple of ``scale_factor * PATCH`` (16 for
            a VAE of 8x and 2x2 patches).
    """
    multiple = scale_factor * PATCH
    for side in (width, height):
        if side % multiple:
            raise ValueError(f"width and height must be multiples of {multiple}, got {side}")


def image_ids(rows: int, cols: int) -> torch.Tensor:
    """FLUX's image-token positions: float (rows * cols, 3) of ``(0, row, col)``."""
    ids = torch.zeros(rows, cols, 3)
    ids[..., 1] = torch.arange(rows)[:, None]
    ids[..., 2] = torch.arange(cols)[None, :]
    return ids.reshape(rows * cols, 3)


def packed_preview(tokens: torch.Tensor, height: int, width: int) -> Image.Image:
    """A quick RGB picture of one packed latent, at latent resolution (no VAE decode).

    Args:
        tokens: (N, 4C) or (1, N, 4C) packed latent of a ``height`` x ``width`` latent.
        height: Latent rows.
        width: Latent columns.

    Returns:
        An RGB image ``width`` x ``height``: FLUX's 16 channels through a fitted linear map, 4
        channels through SDXL's, others as their first three channels.
    """
    latent = unpack(tokens.detach().float().cpu().reshape(1, -1, tokens.shape[-1]), height, width)[
        0
    ]
    channels = latent.shape[0]
    if channels == 4:
        return latent_preview(latent)
    if channels == _FLUX_TO_RGB.shape[0]:
        rgb = torch.einsum("chw,cr->hwr", latent, _FLUX_TO_RGB) + _FLUX_RGB_BIAS
    else:
        rgb = latent[:3].movedim(0, -1)
    pixels = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    return Image.fromarray(np.ascontiguousarray(pixels))
