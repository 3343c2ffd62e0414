"""A fast latent -> RGB approximation for progress previews (no VAE decode)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

# A linear map from SDXL's four latent channels to RGB, fitted on decoded images; good enough to
# see composition and colour while sampling.
_LATENT_TO_RGB = torch.tensor(
    [
        [0.3651, 0.4232, 0.4341],
        [-0.2533, -0.0042, 0.1068],
        [0.1076, 0.1111, -0.0362],
        [-0.3165, -0.2492, -0.2188],
    ]
)
_RGB_BIAS = torch.tensor([0.1084, -0.0175, -0.0011])


def latent_preview(latent: torch.Tensor) -> Image.Image:
    """Approximate RGB picture of one latent, at latent resolution (1/8 of the image).

    Args:
        latent: (4, h, w) or (1, 4, h, w) SDXL latent (any dtype or device).

    Returns:
        An RGB image ``w`` x ``h``.
    """
    latent = latent.detach().float().cpu().reshape(-1, *latent.shape[-2:])[:4]
    rgb = torch.einsum("chw,cr->hwr", latent, _LATENT_TO_RGB[: latent.shape[0]]) + _RGB_BIAS
    pixels = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    return Image.fromarray(np.ascontiguousarray(pixels))
