"""The UNet inputs of a step batch: each job's pass text, and their concatenation for one call.

A job's sampling pass builds its text inputs once, on the UNet's device, before its first step
(:func:`guided_text`, or :func:`separate_text` for Omost's separate passes). Each step yields a
:class:`UNetCall` holding them with the step's latents and noise level. ``denoise_batch`` asks a
:class:`BatchInputCache` for the concatenated inputs of the jobs in the batch: their text keys
padded to the longest job's (padding keys belong to no region, so every pixel's mask hides them),
per-row pooled vectors and time ids, and one :class:`RegionalContext` over every job's regions.
The same jobs in the same order at the next step reuse them (``composition_cache``), so a step
concatenates no text and builds no mask; a job joining or leaving makes a new composition. Each
composition holds, per UNet layer resolution, one (rows, N, L8) mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812  (the conventional alias)

from omost_renderer.pipelines.composition_cache import COMPOSITIONS_KEPT, CompositionCache
from omost_renderer.pipelines.sdxl.attention_processor import RegionalContext
from omost_renderer.pipelines.sdxl.cfg_batch import single_context, stack_for_guidance
from omost_renderer.pipelines.sdxl.encoding import EncodedPrompt


@dataclass(frozen=True)
class GuidedText:
    """One job's text for a pass with batched guidance: groups ``[neg, pos]``, on the device.

    Attributes:
        embeds: (2, L, D) in the UNet's dtype; the shorter prompt zero-padded.
        pooled: (2, P) in the UNet's dtype.
        token_region: int64 (2, L): region of each key per group, -1 on padding.
        masks: float32 (R_neg + R_pos, 90, 90).
        time_ids: (1, 6) SDXL micro-conditioning, in the UNet's dtype.
    """

    embeds: torch.Tensor
    pooled: torch.Tensor
    token_region: torch.Tensor
    masks: torch.Tensor
    time_ids: torch.Tensor


@dataclass(frozen=True)
class SeparateText:
    """One job's text for Omost's separate passes: ``(embeds, pooled, context)`` per prompt.

    Attributes:
        passes: Negative then positive: (k, L, D) embeds, (k, P) pooled, the prompt's context.
        time_ids: (k, 6) in the UNet's dtype.
    """

    passes: tuple[tuple[torch.Tensor, torch.Tensor, RegionalContext], ...]
    time_ids: torch.Tensor


PassText = GuidedText | SeparateText


@dataclass(frozen=True)
class UNetCall:
    """The payload of one SDXL ``DenoiseCall``: one job's step.

    Attributes:
        x: float32 (k, 4, h, w) latents at noise level ``sigma``.
        sigma: The noise level (float32 value) as a Python float.
        input_scale: ``sqrt(sigma^2 + 1)`` (float32 value): the UNet sees ``x / input_scale``.
        timestep: int64 0-dim view on the device of the step's training timestep.
        cfg: Guidance scale.
        text: The pass's text inputs.
    """

    x: torch.Tensor
    sigma: float
    input_scale: float
    timestep: torch.Tensor
    cfg: float
    text: PassText

    @property
    def k(self) -> int:
        """Images of the job."""
        return int(self.x.shape[0])


def guided_text(
    negative: EncodedPrompt,
    positive: EncodedPrompt,
    time_ids: torch.Tensor,
    device: torch.device,
    dtype: torch.dtype,
) -> GuidedText:
    """A job's batched-guidance text on ``device`` (see :class:`GuidedText`)."""
    stacked = stack_for_guidance(negative, positive, 1)
    return GuidedText(
        embeds=stacked.embeds.to(device, dtype),
        pooled=stacked.pooled.to(device, dtype),
        token_region=stacked.token_region.to(device),
        masks=stacked.masks.to(device),
        time_ids=time_ids.to(device, dtype),
    )


def separate_text(
    negative: EncodedPrompt,
    positive: EncodedPrompt,
    time_ids: torch.Tensor,
    latent_size: tuple[int, int],
    k: int,
    device: torch.device,
    dtype: torch.dtype,
) -> SeparateText:
    """A job's text for separate negative and positive passes (see :class:`SeparateText`)."""
    passes = []
    for prompt in (negative, positive):
        on_device = EncodedPrompt(prompt.embeds, prompt.token_region.to(device),
                                  prompt.masks.to(device), prompt.pooled)  # fmt: skip
        context = single_context(on_device, *latent_size, k)
        embeds = prompt.embeds.to(device, dtype).repeat(k, 1, 1)
        passes.append((embeds, prompt.pooled.to(device, dtype).repeat(k, 1), context))
    return SeparateText(tuple(passes), time_ids.to(device, dtype).repeat(k, 1))


@dataclass(frozen=True)
class BatchInputs:
    """The UNet's text inputs for a batch of jobs' rows (B = sum of 2k).

    Attributes:
        embeds: (B, L, D), L the longest job's keys (zero-padded).
        pooled: (B, P).
        time_ids: (B, 6).
        context: Regions of every job; 2 groups per job.
    """

    embeds: torch.Tensor
    pooled: torch.Tensor
    time_ids: torch.Tensor
    context: RegionalContext


def batch_inputs(calls: list[UNetCall]) -> BatchInputs:
    """Concatenate the jobs' guided text for one UNet call over all their rows.

    Args:
        calls: One step of each job, all with :class:`GuidedText` and the same latent shape.

    Returns:
        The batch's inputs; rows in call order, ``[neg] * k + [pos] * k`` per job.
    """
    texts = [call.text for call in calls]
    if not all(isinstance(text, GuidedText) for text in texts):
        raise TypeError("a batched-guidance call needs a GuidedText")
    guided: list[GuidedText] = texts  # type: ignore[assignment]
    length = max(text.embeds.shape[1] for text in guided)
    embeds, pooled, time_ids, regions, repeats = [], [], [], [], []
    offset = 0
    for call, text in zip(calls, guided, strict=True):
        missing = length - text.embeds.shape[1]
        embeds.append(F.pad(text.embeds, (0, 0, 0, missing)).repeat_interleave(call.k, dim=0))
        pooled.append(text.pooled.repeat_interleave(call.k, dim=0))
        time_ids.append(text.time_ids.expand(2 * call.k, -1))
        # Region indices move past the previous jobs' masks; padding stays -1 (no region).
        shifted = torch.where(text.token_region >= 0, text.token_region + offset, -1)
        regions.append(F.pad(shifted, (0, missing), value=-1))
        repeats += [call.k, call.k]
        offset += text.masks.shape[0]
    _, _, lat_h, lat_w = calls[0].x.shape
    context = RegionalContext(
        torch.cat(regions),
        torch.cat([text.masks for text in guided]),
        lat_h,
        lat_w,
        repeats=tuple(repeats),
    )
    return BatchInputs(torch.cat(embeds), torch.cat(pooled), torch.cat(time_ids), context)


class BatchInputCache:
    """The batch inputs of recent compositions (each job's pass text by identity, and its k).

    See ``composition_cache``: at most :data:`COMPOSITIONS_KEPT`, and none of a job that ended.
    """

    def __init__(self, kept: int = COMPOSITIONS_KEPT) -> None:
        self._cache: CompositionCache[PassText, BatchInputs] = CompositionCache(kept)

    def __len__(self) -> int:
        return len(self._cache)

    def inputs(self, calls: list[UNetCall]) -> BatchInputs:
        """The concatenated inputs of ``calls`` (built on a new composition, else reused)."""
        counts = tuple(call.k for call in calls)
        return self._cache.get([call.text for call in calls], counts, lambda: batch_inputs(calls))

    def clear(self) -> None:
        """Forget every composition."""
        self._cache.clear()
