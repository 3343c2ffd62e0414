"""The VAE between pixels and latents: one image at a time, in overlapping tiles when large.

Decoding and encoding run per image so that a batch costs no more memory than one image. An image
whose latent is larger than ``tile_above`` on a side is decoded (or encoded) in overlapping tiles
of ``tile`` latent pixels, cross-faded over their overlap, so that the VAE's memory stays that of
one tile whatever the image size. Smaller images go through the VAE whole, exactly as in Omost.

Pixels leave the pipeline as uint8 the way Omost's ``pytorch2numpy`` makes them:
``(x * 127.5 + 127.5)`` in the decoder's dtype, clipped to 0..255 and truncated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

#: Latent side above which the VAE works in tiles: 192 latents are 1536 pixels, so Omost's
#: default 896x1152 and its 1.25x hires pass (1152x1408) are decoded whole, bit for bit as in
#: Omost, and only larger images (up to 2048 on a side and beyond) are tiled.
TILE_ABOVE_LATENT_SIDE = 192
#: Side of one tile in latents (1024 pixels, the size SDXL's VAE was trained at).
TILE_LATENT_SIDE = 128
#: Share of a tile that overlaps its neighbour (cross-faded), as diffusers' tiled VAE uses.
TILE_OVERLAP = 0.25

#: Maps one (1, C, h, w) tile to its (1, C', h * scale, w * scale) image.
TileFn = Callable[[torch.Tensor], torch.Tensor]


def pixels_to_uint8(pixels: torch.Tensor) -> npt.NDArray[np.uint8]:
    """Omost's ``pytorch2numpy`` for one decoded image.

    The affine map runs in the tensor's own dtype (as Omost's does on its bfloat16 VAE output),
    then the values are clipped to 0..255 and truncated, not rounded.

    Args:
        pixels: (3, H, W) decoder output, nominally in [-1, 1].

    Returns:
        uint8 (H, W, 3).
    """
    scaled = pixels.movedim(0, -1) * 127.5 + 127.5
    return scaled.detach().float().cpu().numpy().clip(0, 255).astype(np.uint8)


def uint8_to_pixels(image: npt.NDArray[np.uint8]) -> torch.Tensor:
    """Omost's ``numpy2pytorch`` for one image.

    Args:
        image: uint8 (H, W, 3).

    Returns:
        float32 (1, 3, H, W) in [-1, 1].
    """
    # A copy: arrays from PIL images are read-only.
    pixels = torch.tensor(np.asarray(image)).float() / 127.5 - 1.0
    return pixels.movedim(-1, 0)[None]


def _starts(size: int, tile: int, stride: int) -> list[int]:
    """Tile origins covering ``size``; the last one is moved back so every tile is whole."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, stride))
    return [*starts, size - tile]


def _ramp(length: int, fade: int, *, rise: bool, fall: bool) -> torch.Tensor:
    """1D tile weight: linear fade-in/out over ``fade`` samples on inner edges, 1 elsewhere."""
    weight = torch.ones(length, dtype=torch.float32)
    steps = torch.arange(1, fade + 1, dtype=torch.float32) / (fade + 1)
    if rise and fade:
        weight[:fade] = torch.minimum(weight[:fade], steps)
    if fall and fade:
        weight[-fade:] = torch.minimum(weight[-fade:], steps.flip(0))
    return weight


def tiled(fn: TileFn, x: torch.Tensor, tile: int, overlap: int, scale: float) -> torch.Tensor:
    """Apply ``fn`` to overlapping ``tile`` x ``tile`` pieces of ``x`` and cross-fade the results.

    Where tiles overlap, each result is weighted by a linear ramp towards its inner edges and the
    weights are normalised, so a seam is a smooth blend; a function that only looks at each pixel
    (an upsampling, say) gives exactly its untiled result.

    Args:
        fn: Maps a (1, C, t, t) tile to (1, C', t * scale, t * scale).
        x: (1, C, H, W) input.
        tile: Tile side in input pixels.
        overlap: Input pixels shared by neighbouring tiles.
        scale: Output pixels per input pixel (8 for a decoder, 1/8 for an encoder).

    Returns:
        (1, C', H * scale, W * scale) float32.
    """
    height, width = x.shape[-2:]
    rows, cols = _starts(height, tile, tile - overlap), _starts(width, tile, tile - overlap)
    out: torch.Tensor | None = None
    total = torch.zeros(int(height * scale), int(width * scale), device=x.device)
    for top in rows:
        for left in cols:
            piece = fn(x[:, :, top : top + tile, left : left + tile]).float()
            if out is None:
                out = torch.zeros(1, piece.shape[1], *total.shape, device=x.device)
            ph, pw = piece.shape[-2:]
            fade = int(overlap * scale)
            weight = _ramp(ph, fade, rise=top > 0, fall=top != rows[-1])[:, None] * _ramp(
                pw, fade, rise=left > 0, fall=left != cols[-1]
            )
            weight = weight.to(x.device)
            y, z = int(top * scale), int(left * scale)
            out[:, :, y : y + ph, z : z + pw] += piece * weight
            total[y : y + ph, z : z + pw] += weight
    if out is None:
        raise ValueError("nothing to tile")
    return out / total


@dataclass(frozen=True)
class VaeCodec:
    """Decodes and encodes with a diffusers ``AutoencoderKL``, per image and tiled when large.

    Attributes:
        vae: The ``AutoencoderKL``.
        tile_above: Latent side above which an image is processed in tiles.
        tile: Tile side in latents.
    """

    vae: Any
    tile_above: int = TILE_ABOVE_LATENT_SIDE
    tile: int = TILE_LATENT_SIDE

    @property
    def scale_factor(self) -> int:
        """Pixels per latent (8 for SDXL)."""
        return int(2 ** (len(self.vae.config.block_out_channels) - 1))

    def tiles(self, latent_height: int, latent_width: int) -> bool:
        """Whether an image of this latent size is processed in tiles."""
        return max(latent_height, latent_width) > self.tile_above

    def _overlap(self) -> int:
        # Counted in latents, so every tile starts on a multiple of 8 pixels (the encoder's grid).
        return max(1, int(self.tile * TILE_OVERLAP))

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> list[npt.NDArray[np.uint8]]:
        """Decode scaled latents to uint8 images, one at a time.

        Args:
            latents: float32 (k, 4, h, w), scaled by the VAE's ``scaling_factor``.

        Returns:
            k uint8 (8h, 8w, 3) arrays.
        """
        vae = self.vae

        def run(z: torch.Tensor) -> torch.Tensor:
            return vae.decode(z).sample  # type: ignore[no-any-return]

        images = []
        for index in range(latents.shape[0]):
            latent = latents[index : index + 1]
            z = (latent / vae.config.scaling_factor).to(vae.device, vae.dtype)
            if self.tiles(*z.shape[-2:]):
                tile = tiled(run, z, self.tile, self._overlap(), self.scale_factor)
                pixels = tile.to(vae.dtype)[0]
            else:
                pixels = run(z)[0]
            images.append(pixels_to_uint8(pixels))
        return images

    @torch.inference_mode()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Encode images in [-1, 1] to scaled latents (the distribution's mode), one at a time.

        Args:
            pixels: float (k, 3, H, W), H and W multiples of 8.

        Returns:
            float32 (k, 4, H/8, W/8) on the VAE's device.
        """
        vae = self.vae
        factor = self.scale_factor

        def run(x: torch.Tensor) -> torch.Tensor:
            return vae.encode(x).latent_dist.mode()  # type: ignore[no-any-return]

        latents = []
        for index in range(pixels.shape[0]):
            image = pixels[index : index + 1]
            x = image.to(vae.device, vae.dtype)
            if self.tiles(x.shape[-2] // factor, x.shape[-1] // factor):
                size, overlap = self.tile * factor, self._overlap() * factor
                latent = tiled(run, x, size, overlap, 1 / factor)
            else:
                latent = run(x).float()
            latents.append(latent * vae.config.scaling_factor)
        return torch.cat(latents)
