"""Where a render starts when not from noise alone: an edit's base render, or the user's image.

Family-agnostic records (numpy and Pillow, no torch): the worker builds them, every pipeline
family that sets ``supports_start`` reads them. A pipeline turns a ``RepaintArea`` into a mask at
its own latent resolution with :meth:`RepaintArea.latent_mask`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt
from omost_schema import Canvas, Rect
from omost_schema.repaint import LATENT_CELL_PX, repaint_mask
from PIL import Image

from omost_renderer.pipelines.rendering import RenderedImage, RenderParams, StepCallback

if TYPE_CHECKING:
    import torch

#: Names of the latents a render keeps per image, one per denoising pass.
BASE_PASS = "base"
HIRES_PASS = "hires"


@dataclass(frozen=True)
class RepaintArea:
    """What a render repaints; the rest is kept.

    Attributes:
        rects: Boxes on the 90x90 grid, dilated and feathered (``omost_schema.repaint``).
        pixels: An explicit mask instead, float32 (H, W) in [0, 1] at the image's size
            (1 repaints).
    """

    rects: tuple[Rect, ...] = ()
    pixels: npt.NDArray[np.float32] | None = None

    def latent_mask(
        self, width: int, height: int, cell_px: int = LATENT_CELL_PX
    ) -> npt.NDArray[np.float32]:
        """The mask on the latent grid of a ``width`` x ``height`` image.

        Returns:
            float32 (height // cell_px, width // cell_px) in [0, 1].
        """
        if self.pixels is None:
            return repaint_mask(list(self.rects), width, height, cell_px=cell_px)
        image = Image.fromarray((self.pixels * 255.0).round().astype(np.uint8), mode="L")
        # A box filter: a latent cell repaints in proportion to its pixels that do.
        small = image.resize((width // cell_px, height // cell_px), Image.Resampling.BOX)
        return np.asarray(small, dtype=np.float32) / 255.0


@dataclass(frozen=True)
class RenderStart:
    """A start other than noise alone.

    Attributes:
        latents: An edit's base latents per pass (``base``, ``hires``), float32 (C, h, w) each.
        image: The user's init image (RGB, any size: the pipeline resizes it to the canvas).
        strength: Share of the schedule an init image runs (img2img strength).
        keep_seed: Seed of the noise that re-noises the kept part (the base render's seed).
        repaint: What is repainted; ``None`` repaints the whole canvas (img2img).
        kept_image: The edit's base image, pasted back outside the repaint area.
    """

    latents: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)
    image: Image.Image | None = None
    strength: float = 1.0
    keep_seed: int = 0
    repaint: RepaintArea | None = None
    kept_image: Image.Image | None = None

    def paste_outside(self, image: Image.Image, mask: npt.NDArray[np.float32]) -> Image.Image:
        """Put the kept pixels back outside the repaint area of a decoded ``image``.

        The latents outside the area already are the base's, but a VAE decoder mixes the whole
        latent (its middle block attends globally), so decoded pixels far from the edit drift
        by a level or two; the paste, over the feathered mask scaled up bilinearly, keeps them
        exact, as inpainting pipelines' overlay step does.

        Args:
            image: The decoded image.
            mask: The repaint mask on any grid over the image (1 repaints).

        Returns:
            ``image`` inside the area, the kept image outside, blended over the feather band.
        """
        kept = self.kept_image or self.image
        if kept is None or self.repaint is None:
            return image
        size = image.size
        kept_px = np.asarray(kept.convert("RGB").resize(size, Image.Resampling.LANCZOS), np.float32)
        alpha = Image.fromarray(mask.astype(np.float32), mode="F").resize(
            size, Image.Resampling.BILINEAR
        )
        weight = np.clip(np.asarray(alpha, dtype=np.float32), 0.0, 1.0)[..., None]
        # A cell that repaints nothing keeps its pixels exactly (bilinear spreads half a cell).
        weight = np.where(np.asarray(upsample_nearest(mask, size))[..., None] > 0, weight, 0.0)
        mixed = weight * np.asarray(image.convert("RGB"), np.float32) + (1.0 - weight) * kept_px
        return Image.fromarray(mixed.round().clip(0, 255).astype(np.uint8), mode="RGB")


def upsample_nearest(mask: npt.NDArray[np.float32], size: tuple[int, int]) -> Image.Image:
    """The mask as a float image of ``size`` (width, height), nearest cells."""
    return Image.fromarray(mask.astype(np.float32), mode="F").resize(size, Image.Resampling.NEAREST)


def finished_renders(
    images: Sequence[Image.Image],
    seeds: Sequence[int],
    passes: Mapping[str, torch.Tensor],
    meta: dict[str, object],
    start: RenderStart | None,
    scale_factor: int,
) -> list[RenderedImage]:
    """A render's decoded images as results: the start pasted back outside its repaint area.

    Args:
        images: The decoded images, one per seed, all of one size.
        seeds: Their seeds.
        passes: Each pass's final latents (batch first), kept with every image for edits.
        meta: The parameters that reproduce the render (each image adds its seed).
        start: The render's start, if any.
        scale_factor: The VAE's pixels per latent cell.
    """
    if start is not None and start.repaint is not None and images:
        width, height = images[0].size
        mask = start.repaint.latent_mask(width, height, scale_factor)
        images = [start.paste_outside(im, mask) for im in images]
    return [
        RenderedImage(image=im, seed=s, metadata={**meta, "seed": s},
                      latents={name: p[i].float().cpu().numpy() for name, p in passes.items()})
        for i, (im, s) in enumerate(zip(images, seeds, strict=True))
    ]  # fmt: skip


class StartingRenderer(Protocol):
    """A renderer that can start from a ``RenderStart`` (``supports_start`` is true)."""

    supports_start: bool

    def render(
        self,
        canvas: Canvas,
        params: RenderParams,
        on_step: StepCallback | None = None,
        *,
        start: RenderStart | None = None,
    ) -> list[RenderedImage]:
        """Render like ``CanvasRenderer.render``, from ``start`` when given."""
        ...
