"""The masked-inpainting blend: outside the repaint area, latents follow a base re-noised.

After every sampler step the latent ``x`` (now at noise level ``sigma_next``) becomes

    x = m * x + (1 - m) * renoise(base, noise, sigma_next)

with ``m`` 1 where the model repaints and 0 where the base is kept. Until the last
``feather_last`` steps the mask is hard (every cell the repaint area touches is free), so what the
model draws can grow into the soft band; the last steps use the feathered mask, so the band fades
into the base instead of ending at a seam. At the last step ``sigma_next`` is 0 and the kept part
is exactly the base latents.

The blend knows nothing of the model: a k-diffusion (SDXL) sampler re-noises with
``base + noise * sigma``, a flow-matching (FLUX) one with ``(1 - s) base + s noise``; masks and
latents are any shape that broadcasts (``(1, 1, h, w)`` over ``(k, C, h, w)``, or packed tokens).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

#: The last this many steps blend with the feathered mask (the earlier ones with the hard mask).
FEATHER_LAST_STEPS = 3

#: A noise level: a Python float (the samplers' step loops) or a 0-dim tensor.
Sigma = float | torch.Tensor
#: ``renoise(base, noise, sigma) -> the base at noise level sigma``.
Renoise = Callable[[torch.Tensor, torch.Tensor, Sigma], torch.Tensor]
#: ``blend(step, x, sigma_next) -> x``: applied by a sampler after step ``step`` (0-based).
StepBlend = Callable[[int, torch.Tensor, Sigma], torch.Tensor]


def renoise_variance_exploding(
    base: torch.Tensor, noise: torch.Tensor, sigma: Sigma
) -> torch.Tensor:
    """k-diffusion's noising (SDXL's samplers): ``base + noise * sigma``."""
    return base + noise * sigma


def renoise_flow_match(base: torch.Tensor, noise: torch.Tensor, sigma: Sigma) -> torch.Tensor:
    """Flow matching's noising (FLUX): ``(1 - sigma) * base + sigma * noise``."""
    return (1.0 - sigma) * base + sigma * noise


@dataclass(frozen=True)
class InpaintBlend:
    """Keeps ``base`` outside the repaint mask while a sampler runs ``steps`` steps.

    Attributes:
        base: Clean latents to keep, e.g. float32 (k, C, h, w).
        noise: The noise that re-noises ``base`` (the base render's own noise keeps its
            trajectory), same shape as ``base``.
        mask: Soft repaint mask in [0, 1] broadcasting over ``base``: 1 repaints, 0 keeps.
        steps: Sampler steps of the run.
        renoise: How the sampler noises a clean latent.
        feather_last: Steps at the end that use the soft mask.
    """

    base: torch.Tensor
    noise: torch.Tensor
    mask: torch.Tensor
    steps: int
    renoise: Renoise = renoise_variance_exploding
    feather_last: int = FEATHER_LAST_STEPS

    def mask_at(self, step: int) -> torch.Tensor:
        """The mask used after step ``step``: hard before the last ``feather_last`` steps."""
        if step >= self.steps - self.feather_last:
            return self.mask
        return (self.mask > 0).to(self.mask.dtype)

    def start(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        """The starting latent: ``x`` inside the (hard) repaint area, the noised base outside."""
        return self._mix((self.mask > 0).to(self.mask.dtype), x, sigma)

    def __call__(self, step: int, x: torch.Tensor, sigma_next: Sigma) -> torch.Tensor:
        """Blend the latent after step ``step``, which brought it to ``sigma_next``."""
        return self._mix(self.mask_at(step), x, sigma_next)

    def _mix(self, mask: torch.Tensor, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        # A float sigma stays on the host: the step loops pass the schedule's floats.
        level = sigma.to(x.dtype) if isinstance(sigma, torch.Tensor) else sigma
        kept = self.renoise(self.base, self.noise, level)
        return mask * x + (1.0 - mask) * kept
