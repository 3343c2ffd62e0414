"""FLUX.2's latents as transformer tokens: 2x2 patches, the VAE's batch-norm statistics, noise.

FLUX.2's VAE (``AutoencoderKLFlux2``) has no scaling factor. Its latent ``z`` (B, C, h, w) (C = 32
for klein) is patchified 2x2 into (B, 4C, h/2, w/2), normalised per feature by the VAE's
batch-norm running statistics, ``(x - mean) / sqrt(var + eps)``, and flattened row-major into
(B, h/2 * w/2, 4C) tokens: exactly diffusers' ``_patchify_latents`` then ``_pack_latents``,
which is FLUX.1's packing (``packed_latents.pack``, features ordered ``(C, 2, 2)``) followed by
a per-feature affine map. Starting noise is drawn, as the stock pipeline draws it, in the
patchified shape (1, 4C, h/2, w/2) per image from a CPU generator, then flattened.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
from PIL import Image

from omost_renderer.pipelines.packed_latents import pack, packed_preview, unpack


@dataclass(frozen=True)
class UnitScaleVae:
    """``AutoencoderKLFlux2`` as ``VaeCodec`` expects a VAE: a ``scaling_factor`` of 1.

    ``VaeCodec`` divides latents by ``config.scaling_factor`` before decoding and multiplies after
    encoding; FLUX.2's VAE has no such factor (its normalisation is the batch norm), so this view
    reports 1 and forwards everything else.

    Attributes:
        vae: The ``AutoencoderKLFlux2``.
    """

    vae: Any

    @property
    def config(self) -> Any:
        """The two config values ``VaeCodec`` reads."""
        return SimpleNamespace(
            scaling_factor=1.0, block_out_channels=self.vae.config.block_out_channels
        )

    @property
    def device(self) -> torch.device:
        """The VAE's device."""
        return self.vae.device  # type: ignore[no-any-return]

    @property
    def dtype(self) -> torch.dtype:
        """The VAE's dtype."""
        return self.vae.dtype  # type: ignore[no-any-return]

    def encode(self, x: torch.Tensor) -> Any:
        """The VAE's ``encode``."""
        return self.vae.encode(x)

    def decode(self, z: torch.Tensor) -> Any:
        """The VAE's ``decode``."""
        return self.vae.decode(z)


@dataclass(frozen=True)
class LatentStats:
    """The VAE's batch-norm statistics of patchified latents.

    Attributes:
        mean: float32 (4C,) running mean.
        std: float32 (4C,) ``sqrt(running_var + eps)``.
    """

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def of(cls, vae: Any) -> LatentStats:
        """The statistics of an ``AutoencoderKLFlux2`` (float32, on the CPU)."""
        eps = float(vae.config.batch_norm_eps)
        mean = vae.bn.running_mean.detach().float().cpu()
        var = vae.bn.running_var.detach().float().cpu()
        return cls(mean=mean, std=torch.sqrt(var + eps))

    def to_tokens(self, z: torch.Tensor) -> torch.Tensor:
        """VAE latents (k, C, h, w) to normalised tokens, float32 (k, h/2 * w/2, 4C)."""
        tokens = pack(z.float())
        return (tokens - self.mean.to(tokens.device)) / self.std.to(tokens.device)

    def to_latents(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Normalised tokens (k, N, 4C) of an ``height`` x ``width`` latent to VAE latents.

        Returns:
            float32 (k, C, height, width) on the tokens' device.
        """
        x = tokens.float() * self.std.to(tokens.device) + self.mean.to(tokens.device)
        return unpack(x, height, width)

    def preview(self, tokens: torch.Tensor, height: int, width: int) -> Image.Image:
        """A quick picture of one image's tokens, (N, 4C) or (1, N, 4C), at latent resolution.

        The tokens are de-normalised first, so the picture shows the VAE's own latent channels
        (``packed_latents.packed_preview``: no decode, only composition and colour).
        """
        latent = tokens.detach().float().cpu().reshape(1, -1, tokens.shape[-1])
        return packed_preview(latent * self.std + self.mean, height, width)


def noise_tokens(
    generators: list[torch.Generator], features: int, rows: int, cols: int
) -> torch.Tensor:
    """Gaussian starting noise, one image per CPU generator, as the stock pipeline draws it.

    Args:
        generators: CPU generators (the same seed gives the same noise on every device).
        features: Token features (4C).
        rows: Token rows (latent height / 2).
        cols: Token columns.

    Returns:
        float32 (len(generators), rows * cols, features) on the CPU.
    """
    noise = [torch.randn((1, features, rows, cols), generator=g) for g in generators]
    # (k, 4C, rows, cols) -> (k, rows * cols, 4C): diffusers' ``_pack_latents``.
    return torch.cat(noise).flatten(2).transpose(1, 2)


def image_positions(rows: int, cols: int) -> torch.Tensor:
    """FLUX.2's image-token positions ``(0, row, col, 0)``: float32 (rows * cols, 4)."""
    ids = torch.zeros(rows, cols, 4)
    ids[..., 1] = torch.arange(rows, dtype=torch.float32)[:, None]
    ids[..., 2] = torch.arange(cols, dtype=torch.float32)[None, :]
    return ids.reshape(rows * cols, 4)
