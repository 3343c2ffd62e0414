"""The FLUX.1 transformer's side of step batching: Euler passes as generators, the batched call.

:meth:`TransformerSteps.pass_steps` is one flow-matching Euler pass of one job as a generator of
:class:`DenoiseCall` (``step_batch``); :meth:`TransformerSteps.denoise_batch` evaluates several
jobs' calls in one transformer call (``step_inputs`` concatenates their inputs and masks). The
pipeline (``pipeline_flux``) does the rest of a render around them.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any, Protocol

import torch

from omost_renderer.pipelines.flow_match import (
    FlowBlend,
    FlowCallback,
    FlowStep,
    euler_steps,
    model_calls,
)
from omost_renderer.pipelines.flux.step_inputs import FluxBatchCache, FluxCall, FluxPassText
from omost_renderer.pipelines.step_batch import DenoiseCall


class MaskSchedule(Protocol):
    """Where the regional mask applies (``regional_schedule.RegionalSchedule``)."""

    @property
    def regional_steps(self) -> int:
        """The mask applies in the first this many steps of each pass."""
        ...

    @property
    def regional_blocks(self) -> int:
        """The mask applies at every this-many-th block."""
        ...

    @property
    def base_ratio(self) -> float:
        """Share of an unmasked pass blended into the image tokens at masked blocks."""
        ...


class TransformerSteps:
    """Sampling passes of a FLUX.1 transformer, alone or batched across jobs.

    Args:
        transformer: A diffusers ``FluxTransformer2DModel``.
        schedule: Where the regional mask applies.
        regional: The regional processors are installed (``False``: diffusers' own).

    Attributes:
        batches: The concatenated inputs of recent batch compositions.
    """

    def __init__(self, transformer: Any, schedule: MaskSchedule, regional: bool = True) -> None:
        self.transformer = transformer
        self.schedule = schedule
        self.regional = regional
        self.batches = FluxBatchCache()

    def pass_steps(
        self,
        latents: torch.Tensor,
        sigmas: torch.Tensor,
        text: FluxPassText,
        progress: FlowCallback | None = None,
        blend: FlowBlend | None = None,
    ) -> Generator[DenoiseCall, torch.Tensor, torch.Tensor]:
        """One flow-matching Euler pass as a generator of transformer calls.

        The schedule's floats and its device copy are made before the first step; a step
        yields a :class:`DenoiseCall` with the latents, a device view of its noise level and
        whether the regional mask applies.

        Args:
            latents: float32 (k, N, 4C), already at ``sigmas[0]``.
            sigmas: Descending noise levels ending with 0.
            text: The pass's text, guidance, image ids and joint mask, on the device.
            progress: Reports each step.
            blend: An edit's inpainting blend after each step.

        Returns:
            (as the generator's value) The denoised packed latents, float32 (k, N, 4C).
        """
        k, tokens, features = latents.shape
        on_device = sigmas.to(self.transformer.device, torch.float32)
        # Without the regional processors padding cannot be hidden: only equal texts share.
        length = None if self.regional else text.text_length
        key = ("flux", tokens, features, self.transformer.dtype, length)

        def call(step: FlowStep) -> DenoiseCall:
            regional = step.index < self.schedule.regional_steps
            return DenoiseCall(key, k, FluxCall(step.x, on_device[step.index], regional, text))

        steps = euler_steps(latents, sigmas.float().tolist(), progress, blend)
        return (yield from model_calls(steps, call))

    @torch.inference_mode()
    def denoise_batch(self, calls: Sequence[DenoiseCall]) -> list[torch.Tensor]:
        """Evaluate the transformer for calls of one key in one call.

        Rows are every job's images in order, with per-row timesteps, guidance and pooled
        vectors, text padded to the longest job's and a per-row joint mask (``step_inputs``).

        Args:
            calls: Pending calls with equal keys (from :meth:`pass_steps`).

        Returns:
            Per call, the velocity of its rows, (k, N, 4C) in the transformer's dtype.
        """
        payloads: list[FluxCall] = [call.payload for call in calls]
        dtype = self.transformer.dtype
        inputs = self.batches.inputs(payloads, self.schedule.regional_blocks,
                                     self.schedule.base_ratio, dtype)  # fmt: skip
        hidden = torch.cat([p.x for p in payloads]).to(dtype)
        timestep = torch.cat([p.sigma.expand(p.k) for p in payloads]).to(dtype)
        kwargs = {"regional_mask": inputs.regional} if self.regional else None
        out = self.transformer(
            hidden_states=hidden,
            encoder_hidden_states=inputs.embeds,
            pooled_projections=inputs.pooled,
            timestep=timestep,
            img_ids=inputs.image_ids,
            txt_ids=inputs.text_ids,
            guidance=inputs.guidance,
            joint_attention_kwargs=kwargs,
            return_dict=False,
        )[0]
        return list(out.split([p.k for p in payloads]))
