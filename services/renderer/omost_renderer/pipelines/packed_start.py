"""How a pass of the packed-token (MM-DiT) families starts: resized pixels, kept parts, the blend.

FLUX.1 and FLUX.2 both see latents as 2x2-packed tokens (``packed_latents.pack``), so an edit's
repaint mask is packed the same way as the latents (feature by feature, so the inpainting blend
works token by token), both take the hires pass's and an init image's start from LANCZOS-resized
pixels, both check an edit's stored base tokens against the pass's grid, and both start a pass by
flow-matching interpolation with the inpainting blend on top (:func:`pass_start`). Both pipelines
use this module; they differ only in how pixels become tokens and how noise is drawn (each
pipeline's ``encode_pixels`` and ``noise``, see :class:`PackedFamily`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from omost_renderer.pipelines.flow_match import noised_start
from omost_renderer.pipelines.inpaint_blend import InpaintBlend, renoise_flow_match
from omost_renderer.pipelines.packed_latents import PATCH, pack, token_grid
from omost_renderer.pipelines.render_start import RenderStart, RepaintArea
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


@dataclass(frozen=True)
class KeptPart:
    """What one pass of an edit keeps outside its repaint area.

    Attributes:
        base: float32 (1, N, F) the clean tokens kept (the edit base's, or the init image's).
        noise: float32 (1, N, F) the noise that re-noises them (the base render's seed).
        mask: float32 (1, N, F) the packed repaint mask (1 repaints, 0 keeps).
    """

    base: torch.Tensor
    noise: torch.Tensor
    mask: torch.Tensor


def edit_base_tokens(
    start: RenderStart, name: str, tokens: int, features: int, device: torch.device
) -> torch.Tensor | None:
    """The edit base's stored tokens of pass ``name``, checked against this pass's grid.

    Args:
        start: The render's start.
        name: The pass (``render_start.BASE_PASS`` or ``HIRES_PASS``).
        tokens: Image tokens of this pass (rows x cols).
        features: Features per token (the transformer's ``in_channels``).
        device: Where the tokens go.

    Returns:
        float32 (1, tokens, features) on ``device``, or ``None`` when the base has no such pass.

    Raises:
        ValueError: When the stored tokens are of another size (another canvas size or model).
    """
    stored = start.latents.get(name)
    if stored is None:
        return None
    base = torch.from_numpy(stored).float()[None].to(device)
    expected = (1, tokens, features)
    if tuple(base.shape) != expected:
        raise ValueError(f"the edit's base latents are {stored.shape}, this pass needs {expected}")
    return base


class PackedFamily(Protocol):
    """What the kept parts of a pass need of a packed-token pipeline (FLUX.1, FLUX.2)."""

    transformer: Any
    vae_scale_factor: int

    @property
    def device(self) -> torch.device:
        """Where the transformer runs."""
        ...

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """VAE-encode pixels in [-1, 1], (k, 3, H, W), to the family's tokens, float32 (k, N, F)."""
        ...

    def noise(self, generators: list[torch.Generator], height: int, width: int) -> torch.Tensor:
        """Noise tokens (k, N, F) of a ``height`` x ``width`` image, one row per generator."""
        ...


def kept_tokens(
    family: PackedFamily, start: RenderStart, name: str, width: int, height: int
) -> torch.Tensor | None:
    """The clean tokens a pass keeps: the init image's, or the edit base's stored ones.

    Args:
        family: The pipeline.
        start: The render's start.
        name: The pass (``render_start.BASE_PASS`` or ``HIRES_PASS``).
        width: The pass's width in pixels.
        height: The pass's height in pixels.

    Returns:
        float32 (1, N, F) on the family's device, or ``None`` when an edit base has no such pass.
    """
    if start.image is not None:
        return family.encode_pixels(resized_pixels([start.image], width, height))
    rows, cols = token_grid(height, width, family.vae_scale_factor)
    features = family.transformer.config.in_channels
    return edit_base_tokens(start, name, rows * cols, features, family.device)


def kept_part(
    family: PackedFamily,
    start: RenderStart | None,
    name: str,
    keep: torch.Generator | None,
    width: int,
    height: int,
) -> KeptPart | None:
    """What one pass keeps outside the repaint area: base tokens, their noise and the mask.

    Args:
        family: The pipeline.
        start: The render's start, if any.
        name: The pass (``render_start.BASE_PASS`` or ``HIRES_PASS``).
        keep: The base render's seed generator, which draws the kept part's noise.
        width: The pass's width in pixels.
        height: The pass's height in pixels.

    Returns:
        The kept part, or ``None`` when the pass repaints everything.
    """
    if start is None or start.repaint is None or keep is None:
        return None
    base = kept_tokens(family, start, name, width, height)
    if base is None:
        return None
    channels = family.transformer.config.in_channels // (PATCH * PATCH)
    mask = packed_repaint_mask(start.repaint, width, height, family.vae_scale_factor, channels)
    return KeptPart(base, family.noise([keep], height, width), mask.to(family.device))


def pass_start(
    init: torch.Tensor | None,
    noise: torch.Tensor,
    sigma: torch.Tensor,
    steps: int,
    kept: KeptPart | None,
) -> tuple[torch.Tensor, InpaintBlend | None]:
    """A flow-matching pass's starting tokens and, for an edit, its inpainting blend.

    Args:
        init: The clean start (a sketch, the hires pass's upscale, an init image), or ``None``
            for pure noise.
        noise: float32 (k, N, F) noise.
        sigma: The pass's first noise level, on the tokens' device.
        steps: Steps of the pass (the blend feathers the last few).
        kept: What the pass keeps outside the repaint area, or ``None``.

    Returns:
        The starting tokens at ``sigma``, float32, and the blend (``None`` without ``kept``).
    """
    latents = noised_start(init, noise, sigma)
    if kept is None:
        return latents, None
    blend = InpaintBlend(base=kept.base, noise=kept.noise, mask=kept.mask, steps=steps,
                         renoise=renoise_flow_match)  # fmt: skip
    return blend.start(latents, sigma), blend
