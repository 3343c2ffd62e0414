"""The SDXL UNet's side of step batching: sampling passes as generators, and the batched call.

:meth:`UNetSteps.pass_steps` is one DPM++ 2M pass of one job as a generator of
:class:`DenoiseCall` (``step_batch``); :meth:`UNetSteps.denoise_batch` evaluates several jobs'
calls in one UNet call (``step_inputs`` concatenates their inputs). The pipeline
(``pipeline_sdxl``) does the rest of a render around them.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import torch

from omost_renderer.pipelines.sdxl.attention_processor import (
    RegionalAttnProcessor,
    RegionalContext,
    install_regional_processor,
)
from omost_renderer.pipelines.sdxl.encoding import EncodedPrompt
from omost_renderer.pipelines.sdxl.sampling import (
    SamplerBlend,
    SamplerCallback,
    dpmpp_2m_steps,
    schedule_of,
    training_sigmas,
)
from omost_renderer.pipelines.sdxl.step_inputs import (
    BatchInputCache,
    PassText,
    SeparateText,
    UNetCall,
    guided_text,
    separate_text,
)
from omost_renderer.pipelines.step_batch import DenoiseCall


class UNetSteps:
    """Sampling passes of an SDXL UNet, alone or batched across jobs.

    Args:
        unet: A diffusers ``UNet2DConditionModel`` (SDXL layout).
        batched_guidance: Negative and positive rows in one UNet call (default); ``False``
            runs them as separate passes, as Omost does.

    Attributes:
        batches: The concatenated inputs of recent batch compositions.
    """

    def __init__(self, unet: Any, batched_guidance: bool = True) -> None:
        self.unet = unet
        self.batched_guidance = batched_guidance
        self.batches = BatchInputCache()
        self._train_sigmas = training_sigmas()
        self._regional: RegionalAttnProcessor | None = None

    @property
    def device(self) -> torch.device:
        """Where the UNet runs."""
        return self.unet.device  # type: ignore[no-any-return]

    def _time_ids(self, height: int, width: int) -> torch.Tensor:
        # SDXL micro-conditioning: original size, crop (0, 0), target size. (1, 6) float32.
        ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=torch.float32)
        return ids.to(self.device)

    @torch.inference_mode()
    def _pass_text(
        self,
        negative: EncodedPrompt,
        positive: EncodedPrompt,
        pixel_size: tuple[int, int],
        latent_size: tuple[int, int],
        k: int,
    ) -> PassText:
        """One pass's text inputs on the UNet's device, built before its first step."""
        time_ids = self._time_ids(*pixel_size)
        if self.batched_guidance:
            return guided_text(negative, positive, time_ids, self.device, self.unet.dtype)
        return separate_text(negative, positive, time_ids, latent_size, k, self.device,
                             self.unet.dtype)  # fmt: skip

    def pass_steps(
        self,
        latents: torch.Tensor,
        sigmas: torch.Tensor,
        negative: EncodedPrompt,
        positive: EncodedPrompt,
        cfg: float,
        pixel_size: tuple[int, int],
        progress: SamplerCallback | None = None,
        blend: SamplerBlend | None = None,
    ) -> Generator[DenoiseCall, torch.Tensor, torch.Tensor]:
        """One sampling pass as a generator of UNet calls (``step_batch``).

        Everything that reads the host (the schedule, the timesteps, the text on the device) is
        done before the first step; a step yields a :class:`DenoiseCall` whose payload holds
        the latents, the noise level as a float and device views of the pass's tensors.

        Args:
            latents: float32 (k, 4, h, w), already noised to ``sigmas[0]``.
            sigmas: Descending noise levels ending with 0.
            negative: The negative conditioning.
            positive: The canvas's regional conditioning.
            cfg: Guidance scale.
            pixel_size: ``(height, width)`` of the image, for SDXL's time ids.
            progress: Reports each step.
            blend: Rewrites the latents after each step (an edit's inpainting blend).

        Returns:
            (as the generator's value) The denoised latents, float32 (k, 4, h, w).
        """
        k, channels, lat_h, lat_w = latents.shape
        schedule = schedule_of(sigmas, self._train_sigmas)
        text = self._pass_text(negative, positive, pixel_size, (lat_h, lat_w), k)
        # One copy to the device per pass; a step takes a view.
        timesteps = torch.tensor(schedule.timesteps, dtype=torch.int64).to(self.device)
        key: tuple[object, ...] = ("sdxl", channels, lat_h, lat_w, self.unet.dtype)
        if not self.batched_guidance:
            # Separate passes share no UNet call: each pass is a key of its own, so the driver's
            # counts stay true (one call per step) and the jobs take turns.
            key = (*key, "separate", id(text))
        sampler = dpmpp_2m_steps(latents, schedule, progress, blend)
        try:
            step = next(sampler)
            while True:
                call = UNetCall(x=step.x, sigma=step.sigma,
                                input_scale=schedule.input_scales[step.index],
                                timestep=timesteps[step.index], cfg=cfg, text=text)  # fmt: skip
                denoised = yield DenoiseCall(key, 2 * k, call)
                step = sampler.send(denoised)
        except StopIteration as done:
            result: torch.Tensor = done.value
            return result

    @torch.inference_mode()
    def denoise_batch(self, calls: Sequence[DenoiseCall]) -> list[torch.Tensor]:
        """Evaluate the UNet for calls of one key in one UNet call (``BatchingRenderer``).

        Each call is one job's ``[neg] * k + [pos] * k`` rows; the batch is every job's rows in
        order, with per-row input scaling and timesteps, per-job time ids and pooled vectors,
        text keys padded to the longest job's and one regional context for all of them.
        Without batched guidance (Omost's separate passes, a benchmark baseline) each call runs
        its two passes on its own.

        Args:
            calls: Pending calls with equal keys (from :meth:`pass_steps`).

        Returns:
            Per call, its guided denoised estimate, float32 (k, 4, h, w).
        """
        payloads: list[UNetCall] = [call.payload for call in calls]
        if not self.batched_guidance:
            return [self._separate_passes(p) for p in payloads]
        inputs = self.batches.inputs(payloads)
        x_in = torch.cat([torch.cat([p.x, p.x]) / p.input_scale for p in payloads])
        timesteps = torch.cat([p.timestep.expand(2 * p.k) for p in payloads])
        eps = self._unet_eps(x_in, timesteps, inputs.embeds, inputs.pooled, inputs.time_ids,
                             inputs.context)  # fmt: skip
        results, offset = [], 0
        for p in payloads:
            eps_neg, eps_pos = eps[offset : offset + p.k], eps[offset + p.k : offset + 2 * p.k]
            results.append(p.x - (eps_neg + p.cfg * (eps_pos - eps_neg)) * p.sigma)
            offset += 2 * p.k
        return results

    def _unet_eps(
        self,
        x_in: torch.Tensor,
        timesteps: torch.Tensor,
        embeds: torch.Tensor,
        pooled: torch.Tensor,
        time_ids: torch.Tensor,
        context: RegionalContext,
    ) -> torch.Tensor:
        """Eps prediction of the UNet for scaled inputs (B, 4, h, w) and int64 timesteps (B,)."""
        dtype = self.unet.dtype
        added = {"text_embeds": pooled, "time_ids": time_ids}
        if self._regional is None:
            # Once, at the first call: after the loader's speed options fused the projections.
            self._regional = install_regional_processor(self.unet)
        with self._regional.context_set(context):
            out = self.unet(x_in.to(dtype), timesteps, encoder_hidden_states=embeds,
                            added_cond_kwargs=added, return_dict=False)[0]  # fmt: skip
        return out.float()  # type: ignore[no-any-return]

    def _separate_passes(self, call: UNetCall) -> torch.Tensor:
        """Omost's guidance: a negative and a positive UNet pass, each with its own context."""
        text = call.text
        if not isinstance(text, SeparateText):
            raise TypeError("separate guidance needs a SeparateText")
        x_in = call.x / call.input_scale
        timesteps = call.timestep.expand(call.k)
        eps = [
            self._unet_eps(x_in, timesteps, embeds, pooled, text.time_ids, context)
            for embeds, pooled, context in text.passes
        ]
        return call.x - (eps[0] + call.cfg * (eps[1] - eps[0])) * call.sigma
