"""Per-step progress of a denoising pass with occasional previews, for every family.

A render may run two passes (base and hires); each reports its steps on the render's own count
(``offset`` + the step within the pass, out of ``total``), with a preview image every
``preview_every`` steps and at the last. The preview is of the step's denoised estimate (x0), not
the noisy latent, so early previews already show the composition. The family supplies the preview
of one image's latents (SDXL: ``preview.latent_preview``; FLUX.1: ``packed_latents.packed_preview``;
FLUX.2: de-normalised first, ``LatentStats``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from PIL import Image

from omost_renderer.pipelines.rendering import StepCallback

#: A picture of one image's latents: (C, h, w) (SDXL) or (N, F) packed tokens; any dtype, device.
Preview = Callable[[torch.Tensor], Image.Image]


@dataclass(frozen=True)
class StepProgress:
    """Maps the steps of one pass onto the render's step count, with occasional previews.

    Attributes:
        on_step: The render's step callback (``None``: nothing reported).
        offset: Steps of the render before this pass.
        total: Steps of the whole render.
        preview_every: A preview every this many steps (and at the last).
        preview: The family's preview of one image.
    """

    on_step: StepCallback | None
    offset: int
    total: int
    preview_every: int
    preview: Preview

    def __call__(self, index: int, latents: torch.Tensor, denoised: torch.Tensor) -> None:
        """Report step ``index`` (0-based in the pass) with the first image's x0 estimate."""
        if self.on_step is None:
            return
        step = self.offset + index + 1
        show = step % self.preview_every == 0 or step == self.total
        self.on_step(step, self.total, self.preview(denoised[0]) if show else None)
