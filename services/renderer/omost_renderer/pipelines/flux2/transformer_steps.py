"""The FLUX.2 transformer's side of step batching: the model call of a step, the batched call.

:meth:`Flux2TransformerSteps.call` turns one Euler step of one job into a :class:`DenoiseCall`
(``step_batch``); :meth:`Flux2TransformerSteps.denoise_batch` evaluates several jobs' calls that
share a key in one transformer call, and for klein base a second one on the negative prompts for
classifier-free guidance. The pipeline (``pipeline_flux2``) does the rest of a render around them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from omost_renderer.pipelines.flow_match import FlowStep
from omost_renderer.pipelines.flux.attention_processor import RegionalMask
from omost_renderer.pipelines.flux2.encoding import Flux2Prompt, text_positions
from omost_renderer.pipelines.regional_schedule import RegionalSchedule
from omost_renderer.pipelines.step_batch import DenoiseCall

#: The family's name in metadata and in model-call keys.
FAMILY = "flux2"


@dataclass(frozen=True)
class Flux2Conditioning:
    """A render's text on the transformer's device, its mask and positions at one latent size.

    Attributes:
        prompt: The canvas's text (embeds on the transformer's device and dtype).
        mask: (1, 1, T + N, T + N) regional bias, or ``None`` (one region, or not regional).
        image_ids: (N, 4) image-token positions.
        rows: Token rows.
        cols: Token columns.
        negative: (1, Tn, D) the negative prompt's states when guidance runs, else ``None``.
        cfg: The guidance scale (used only with ``negative``).
    """

    prompt: Flux2Prompt
    mask: torch.Tensor | None
    image_ids: torch.Tensor
    rows: int
    cols: int
    negative: torch.Tensor | None
    cfg: float


@dataclass(frozen=True)
class Flux2Step:
    """What one render asks of the model at one step (a ``DenoiseCall``'s payload).

    Attributes:
        x: float32 (k, N, F) latents at ``sigma``.
        sigma: The noise level (the schedule's float).
        conditioning: The render's text, mask and positions.
        masked: Whether the regional mask applies at this step.
    """

    x: torch.Tensor
    sigma: float
    conditioning: Flux2Conditioning
    masked: bool


class Flux2TransformerSteps:
    """Model calls of a FLUX.2 transformer, alone or batched across jobs.

    Args:
        transformer: A diffusers ``Flux2Transformer2DModel``.
        schedule: Where the regional mask applies.
        regional: The regional processors are installed (``False``: diffusers' own).
    """

    def __init__(self, transformer: Any, schedule: RegionalSchedule, regional: bool = True) -> None:
        self.transformer = transformer
        self.schedule = schedule
        self.regional = regional

    @property
    def device(self) -> torch.device:
        """Where the transformer runs."""
        return self.transformer.device  # type: ignore[no-any-return]

    def call(self, step: FlowStep, c: Flux2Conditioning) -> DenoiseCall:
        """One render's model call at one Euler step.

        Its key holds what one transformer call must share: the token grid, each region's text
        length (the text positions depend on it), the negative prompt's length, and whether the
        regional mask applies at this step.
        """
        masked = c.mask is not None and step.index < self.schedule.regional_steps
        negative = None if c.negative is None else c.negative.shape[1]
        key = (FAMILY, c.rows, c.cols, c.prompt.region_lengths, negative, masked)
        rows = step.x.shape[0] * (1 if c.negative is None else 2)
        return DenoiseCall(key=key, rows=rows, payload=Flux2Step(step.x, step.sigma, c, masked))

    @torch.inference_mode()
    def denoise_batch(self, calls: Sequence[DenoiseCall]) -> list[torch.Tensor]:
        """Evaluate the velocity of calls that share a key in one transformer call.

        Rows are every job's images in order, with per-row noise levels, text and joint mask;
        with guidance, a second call on the negative prompts and the per-row scale.

        Args:
            calls: ``DenoiseCall``s of :meth:`call` with one key.

        Returns:
            Each call's velocity, float32 (k, N, F), in order.
        """
        steps: list[Flux2Step] = [call.payload for call in calls]
        first = steps[0].conditioning
        sizes = [step.x.shape[0] for step in steps]
        dtype = self.transformer.dtype
        x = torch.cat([step.x for step in steps]).to(self.device, dtype)
        levels = [s.sigma for s, k in zip(steps, sizes, strict=True) for _ in range(k)]
        sigma = torch.tensor(levels).to(self.device, dtype)
        embeds = torch.cat(
            [
                s.conditioning.prompt.embeds.expand(k, -1, -1)
                for s, k in zip(steps, sizes, strict=True)
            ]
        )
        regional = None
        if steps[0].masked:
            bias = torch.cat(
                [
                    _bias(s.conditioning).expand(k, -1, -1, -1)
                    for s, k in zip(steps, sizes, strict=True)
                ]
            )
            every, ratio = self.schedule.regional_blocks, self.schedule.base_ratio
            regional = RegionalMask(bias, embeds.shape[1], every, ratio)
        velocity = self._velocity(
            x, sigma, embeds, first.prompt.text_ids, first.image_ids, regional
        )
        if first.negative is not None:
            negatives = torch.cat(
                [
                    _negative(s.conditioning).expand(k, -1, -1)
                    for s, k in zip(steps, sizes, strict=True)
                ]
            )
            lengths = [negatives.shape[1]]
            unguided = self._velocity(
                x, sigma, negatives, text_positions(lengths).to(self.device), first.image_ids, None
            )
            scale = torch.cat(
                [torch.full((k,), s.conditioning.cfg) for s, k in zip(steps, sizes, strict=True)]
            )
            scale = scale.to(self.device)[:, None, None]
            velocity = unguided + scale * (velocity - unguided)
        return list(torch.split(velocity, sizes))

    def _velocity(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor,
        embeds: torch.Tensor,
        text_ids: torch.Tensor,
        image_ids: torch.Tensor,
        regional: RegionalMask | None,
    ) -> torch.Tensor:
        kwargs = {"regional_mask": regional} if self.regional else None
        out = self.transformer(
            hidden_states=x,
            encoder_hidden_states=embeds,
            timestep=sigma,
            img_ids=image_ids,
            txt_ids=text_ids,
            guidance=None,
            joint_attention_kwargs=kwargs,
            return_dict=False,
        )[0]
        return out.float()  # type: ignore[no-any-return]


def _bias(conditioning: Flux2Conditioning) -> torch.Tensor:
    if conditioning.mask is None:
        raise ValueError("a masked step without a mask")
    return conditioning.mask


def _negative(conditioning: Flux2Conditioning) -> torch.Tensor:
    if conditioning.negative is None:
        raise ValueError("a guided step without a negative prompt")
    return conditioning.negative
