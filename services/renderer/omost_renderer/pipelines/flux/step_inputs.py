"""The transformer inputs of a FLUX.1 step batch: each job's pass, and their concatenation.

A job's pass builds its inputs once, on the transformer's device, before its first step
(:class:`FluxPassText`: the text states, pooled vector, distilled guidance, image ids and its
joint mask). Each step yields a :class:`FluxCall` with the step's latents and noise level.

Jobs of one latent shape share a transformer call. Their text lengths differ, so the text tokens
are padded to the longest job's ``T``; the joint sequence is ``[text (T), image (N)]`` for every
row. A padding text token is a key no query may see (its column is ``-inf``) and a query that sees
only itself (so its row stays finite and influences nothing). A job's rows take its own joint mask
(placed into the padded sequence) while its step is within the regional schedule, else the
padding-only mask; the unmasked attention of the other blocks and of the base-ratio blend uses the
padding-only mask. A lone job, or jobs of one text length with no mask, get no mask at all: the
computation is then exactly the unbatched one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812  (the conventional alias)

from omost_renderer.pipelines.composition_cache import COMPOSITIONS_KEPT, CompositionCache
from omost_renderer.pipelines.flux.attention_processor import RegionalMask
from omost_renderer.pipelines.mask_layout import padded_keys, rows_of_groups


@dataclass(frozen=True)
class FluxPassText:
    """One job's inputs for a pass, on the transformer's device.

    Attributes:
        embeds: (1, T_j, D) T5 states in the transformer's dtype.
        pooled: (1, P) CLIP pooled vector.
        guidance: float32 (k,) distilled guidance, or ``None`` for models without it.
        image_ids: (N, 3) positions of the image tokens.
        mask: (1, 1, T_j + N, T_j + N) joint mask, or ``None`` (global region only, or not
            regional).
    """

    embeds: torch.Tensor
    pooled: torch.Tensor
    guidance: torch.Tensor | None
    image_ids: torch.Tensor
    mask: torch.Tensor | None

    @property
    def text_length(self) -> int:
        """``T_j``."""
        return int(self.embeds.shape[1])


@dataclass(frozen=True)
class FluxCall:
    """The payload of one FLUX ``DenoiseCall``: one job's step.

    Attributes:
        x: float32 (k, N, 4C) packed latents at noise level ``sigma``.
        sigma: 0-dim float32 view on the device of the step's noise level (the timestep).
        regional: Whether the step is within the regional schedule (the job's mask applies).
        text: The pass's inputs.
    """

    x: torch.Tensor
    sigma: torch.Tensor
    regional: bool
    text: FluxPassText

    @property
    def k(self) -> int:
        """Images of the job."""
        return int(self.x.shape[0])

    @property
    def masked(self) -> bool:
        """Whether this step's rows take the job's joint mask."""
        return self.regional and self.text.mask is not None


def placed(mask: torch.Tensor | None, text_length: int, padded: int, image: int) -> torch.Tensor:
    """One job's joint mask placed into the padded sequence ``[text (padded), image]``.

    Args:
        mask: The job's (1, 1, T_j + N, T_j + N) mask, or ``None`` (nothing hidden).
        text_length: ``T_j``.
        padded: ``T``, the batch's text length (>= ``T_j``).
        image: ``N`` image tokens.

    Returns:
        (T + N, T + N): the job's mask on its tokens, ``-inf`` on the padding keys, and each
        padding query seeing only itself.
    """
    size = padded + image
    device = mask.device if mask is not None else None
    dtype = mask.dtype if mask is not None else torch.float32
    out = torch.full((size, size), float("-inf"), dtype=dtype, device=device)
    t = text_length
    if mask is None:
        out[:t, :t] = 0
        out[:t, padded:] = 0
        out[padded:, :t] = 0
        out[padded:, padded:] = 0
    else:
        bias = mask[0, 0]
        out[:t, :t] = bias[:t, :t]
        out[:t, padded:] = bias[:t, t:]
        out[padded:, :t] = bias[t:, :t]
        out[padded:, padded:] = bias[t:, t:]
    # Each padding query sees itself only: a finite row that no other token reads.
    out.diagonal()[t:padded] = 0
    return out


@dataclass(frozen=True)
class FluxBatchInputs:
    """The transformer's inputs (besides the latents and timesteps) for a batch's rows.

    Attributes:
        embeds: (B, T, D) text states, zero-padded.
        pooled: (B, P).
        guidance: float32 (B,) or ``None``.
        text_ids: (T, 3) zeros (FLUX's text positions).
        image_ids: (N, 3).
        regional: The mask to pass, or ``None`` when nothing is hidden.
    """

    embeds: torch.Tensor
    pooled: torch.Tensor
    guidance: torch.Tensor | None
    text_ids: torch.Tensor
    image_ids: torch.Tensor
    regional: RegionalMask | None


def batch_inputs(
    calls: list[FluxCall], every: int, base_ratio: float, dtype: torch.dtype
) -> FluxBatchInputs:
    """Concatenate the jobs' pass inputs for one transformer call over all their rows.

    Args:
        calls: One step of each job, all with the same latent shape.
        every: The schedule's ``regional_blocks``.
        base_ratio: The schedule's base-pass share.
        dtype: The transformer's dtype (of the masks).

    Returns:
        The batch's inputs, rows in call order (``k`` per job).
    """
    texts = [call.text for call in calls]
    length = max(text.text_length for text in texts)
    repeats = tuple(call.k for call in calls)
    embeds = torch.cat([
        F.pad(text.embeds, (0, 0, 0, length - text.text_length)).expand(call.k, -1, -1)
        for call, text in zip(calls, texts, strict=True)
    ])  # fmt: skip
    pooled = torch.cat([call.text.pooled.expand(call.k, -1) for call in calls])
    guidance = None
    if texts[0].guidance is not None:
        guidance = torch.cat([text.guidance for text in texts if text.guidance is not None])
    image_ids = texts[0].image_ids
    text_ids = torch.zeros(length, 3, device=image_ids.device, dtype=image_ids.dtype)
    padded = any(text.text_length != length for text in texts)
    masked = [call.masked for call in calls]
    regional = None
    if len(calls) == 1 and not padded:
        # A lone job: its own mask as it always was (or none).
        if masked[0]:
            regional = RegionalMask(texts[0].mask, length, every, base_ratio)  # type: ignore[arg-type]
    elif padded or any(masked):
        image = image_ids.shape[0]
        size = length + image
        unmasked = torch.stack([
            padded_keys(placed(None, text.text_length, length, image).to(dtype))
            for text in texts
        ])  # fmt: skip
        bias = torch.stack([
            padded_keys(placed(text.mask if on else None, text.text_length, length, image))
            if on else unmasked[index]
            for index, (text, on) in enumerate(zip(texts, masked, strict=True))
        ])  # fmt: skip
        ratio = torch.cat([
            torch.full((call.k, 1, 1), base_ratio if on else 0.0, dtype=dtype,
                       device=image_ids.device)
            for call, on in zip(calls, masked, strict=True)
        ])  # fmt: skip
        regional = RegionalMask(
            rows_of_groups(bias, repeats)[:, None, :, :size],
            length,
            every,
            ratio if base_ratio > 0 else 0.0,
            rows_of_groups(unmasked, repeats)[:, None, :, :size],
        )
    return FluxBatchInputs(embeds, pooled, guidance, text_ids, image_ids, regional)


class FluxBatchCache:
    """The batch inputs of recent compositions (pass inputs by identity, k, masked or not).

    See ``composition_cache``: at most :data:`COMPOSITIONS_KEPT`, and none of a job that ended.
    Each composition holds two (rows, 1, T + N, T + N) masks when its text is padded.
    """

    def __init__(self, kept: int = COMPOSITIONS_KEPT) -> None:
        self._cache: CompositionCache[FluxPassText, FluxBatchInputs] = CompositionCache(kept)

    def __len__(self) -> int:
        return len(self._cache)

    def inputs(
        self, calls: list[FluxCall], every: int, base_ratio: float, dtype: torch.dtype
    ) -> FluxBatchInputs:
        """The concatenated inputs of ``calls`` (built on a new composition, else reused)."""
        extra = (tuple((call.k, call.masked) for call in calls), every, base_ratio, dtype)
        return self._cache.get(
            [call.text for call in calls],
            extra,
            lambda: batch_inputs(calls, every, base_ratio, dtype),
        )
