"""Regional cross-attention as a diffusers attention processor (no patching of library classes).

The pipeline installs one shared :class:`RegionalAttnProcessor` on every cross-attention layer of
the UNet with ``unet.set_attn_processor``, once (:func:`install_regional_processor`), and gives it
each UNet call's context; :func:`regional_attention_installed` installs processors for a ``with``
block and puts the previous ones back (benchmarks, tests). Self-attention keeps diffusers'
standard processor. Each layer recovers its feature-map height and width from its sequence length
and the latent's shape, so nothing has to be threaded through the UNet's forward.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers.models.attention_processor import (
    Attention,
    AttnProcessor2_0,
    FusedAttnProcessor2_0,
    XFormersAttnProcessor,
)

from omost_renderer.pipelines.mask_layout import padded_keys, rows_of_groups
from omost_renderer.pipelines.regional_attention import (
    masked_scaled_attention,
    region_bias,
    region_key_scale,
    resize_masks,
)


def layer_size(sequence_length: int, latent_height: int, latent_width: int) -> tuple[int, int]:
    """Height and width of a UNet feature map with ``sequence_length`` pixels.

    SDXL halves the latent with stride-2 convolutions (padding 1, so odd sides round up); the
    layer's map is the latent shrunk by the first power of two whose area matches.

    Args:
        sequence_length: Number of query tokens of the layer (H * W).
        latent_height: Rows of the latent.
        latent_width: Columns of the latent.

    Returns:
        ``(H, W)``.

    Raises:
        ValueError: When no power-of-two reduction of the latent has that many pixels.
    """
    height, width = latent_height, latent_width
    while height * width > sequence_length and (height, width) != (1, 1):
        height, width = -(-height // 2), -(-width // 2)
    if height * width == sequence_length:
        return height, width
    raise ValueError(
        f"no reduction of a {latent_height}x{latent_width} latent has {sequence_length} pixels"
    )


@dataclass
class RegionalContext:
    """What the regional processors need for one UNet call (or one run of them).

    The UNet batch is made of groups of rows: a group is one conditioning (one job's negative or
    positive prompt) repeated once per image of that job. One job with batched guidance is two
    groups, ``[neg] * k + [pos] * k``; a step batch of several jobs is every job's groups, in the
    batch's order, with each job's region indices offset into the shared ``masks``.

    Attributes:
        token_region: int64 (G, L): region of each key token per group, -1 for padding (a
            shorter job's keys are padded to the longest; padding belongs to no region).
        masks: float (R, 90, 90): every region of every group.
        latent_height: Rows of the latent being denoised.
        latent_width: Columns of the latent being denoised.
        repeats: Rows of the batch per group: an int for every group alike, or one per group.
    """

    token_region: torch.Tensor
    masks: torch.Tensor
    latent_height: int
    latent_width: int
    repeats: int | tuple[int, ...] = 1
    _cache: dict[tuple[int, torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, repr=False
    )

    @property
    def group_repeats(self) -> tuple[int, ...]:
        """Rows of each group."""
        if isinstance(self.repeats, int):
            return (self.repeats,) * self.token_region.shape[0]
        return self.repeats

    def for_layer(
        self, sequence_length: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Key scales (B, L) and additive mask (B, N, L) of a layer with ``sequence_length`` pixels.

        Computed once per resolution, on the queries' device and in their dtype, and kept for
        every later step, so a step moves nothing between devices and allocates no mask. The
        mask is built per group (G, N, L) with its key axis stored padded to a multiple of 8
        (``padded_keys``); the rows of a group are views of it where the layout allows.
        """
        key = (sequence_length, device, dtype)
        cached = self._cache.get(key)
        if cached is None:
            height, width = layer_size(sequence_length, self.latent_height, self.latent_width)
            masks = resize_masks(self.masks, height, width).to(device)
            token_region = self.token_region.to(device)
            scale = region_key_scale(masks, token_region)
            storage = padded_keys(region_bias(masks, token_region, dtype))  # (G, N, L8)
            repeats = self.group_repeats
            rows = rows_of_groups(storage, repeats)[..., : token_region.shape[-1]]  # (B, N, L)
            cached = (rows_of_groups(scale, repeats), rows)
            self._cache[key] = cached
        return cached


class RegionalAttnProcessor:
    """Cross-attention processor applying Omost's regional attention.

    Args:
        context: The call's regions; shared by every cross-attention layer of the UNet. The
            pipeline's installed processor gets one per UNet call (``context_set``).
    """

    def __init__(self, context: RegionalContext | None = None) -> None:
        self.context = context

    @contextmanager
    def context_set(self, context: RegionalContext) -> Iterator[None]:
        """Use ``context`` for the ``with`` block (one UNet call), then hold none again."""
        self.context = context
        try:
            yield
        finally:
            self.context = None

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run one cross-attention layer: (B, N, C) image tokens attend to (B, L, D) text tokens."""
        if encoder_hidden_states is None:
            raise ValueError("RegionalAttnProcessor is for cross-attention layers only")
        if self.context is None:
            raise RuntimeError("the regional processor runs only within a call with a context")
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channels, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channels, height * width).transpose(1, 2)
        batch, sequence_length, _ = hidden_states.shape
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        if attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)

        query = attn.to_q(hidden_states)
        if getattr(attn, "fused_projections", False):
            # OMOST_RENDERER_FUSE_QKV: one GEMM for key and value (diffusers' ``to_kv``).
            key, value = attn.to_kv(encoder_hidden_states).chunk(2, dim=-1)
        else:
            key = attn.to_k(encoder_hidden_states)
            value = attn.to_v(encoder_hidden_states)
        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        context = self.context
        scale, bias = context.for_layer(sequence_length, query.device, query.dtype)
        out = masked_scaled_attention(query, key, value, scale, bias)
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[0](out)
        out = attn.to_out[1](out)
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(batch, channels, height, width)
        if attn.residual_connection:
            out = out + residual
        result: torch.Tensor = out / attn.rescale_output_factor
        return result


def self_attention_processor(device: torch.device, *, fused: bool = False) -> Any:
    """Diffusers' standard processor for self-attention: xformers on CUDA when installed, else SDPA.

    Args:
        device: Where the UNet runs.
        fused: The UNet's projections are fused (``OMOST_RENDERER_FUSE_QKV``): diffusers'
            processor that reads ``to_qkv``.

    Returns:
        A ``FusedAttnProcessor2_0``, an ``XFormersAttnProcessor`` or an ``AttnProcessor2_0``.
    """
    if fused:
        return FusedAttnProcessor2_0()  # type: ignore[no-untyped-call]
    if device.type == "cuda" and importlib.util.find_spec("xformers") is not None:
        return XFormersAttnProcessor()
    return AttnProcessor2_0()  # type: ignore[no-untyped-call]


def regional_processors(
    processor_names: Iterator[str] | list[str],
    context: RegionalContext | None,
    device: torch.device,
    *,
    fused: bool = False,
) -> dict[str, Any]:
    """Processor map for ``unet.set_attn_processor``: regional on ``attn2``, standard elsewhere.

    In diffusers' transformer blocks ``attn1`` is self-attention and ``attn2`` cross-attention.

    Args:
        processor_names: Keys of ``unet.attn_processors``.
        context: The run's regions.
        device: Where the UNet runs.
        fused: The UNet's projections are fused (see ``self_attention_processor``).

    Returns:
        One processor per name.
    """
    regional = RegionalAttnProcessor(context)
    plain = self_attention_processor(device, fused=fused)
    return {
        name: regional if name.endswith("attn2.processor") else plain for name in processor_names
    }


def _processors_for(unet: Any, context: RegionalContext | None) -> dict[str, Any]:
    names = list(unet.attn_processors)
    # ``fuse_qkv`` fuses every layer or none: the first layer tells.
    first = unet.get_submodule(names[0].removesuffix(".processor"))
    fused = bool(getattr(first, "fused_projections", False))
    return regional_processors(names, context, unet.device, fused=fused)


def install_regional_processor(unet: Any) -> RegionalAttnProcessor:
    """Put one shared :class:`RegionalAttnProcessor` on ``unet``'s cross-attention layers, for good.

    The pipeline installs it once, at its first UNet call (after the speed options fused the
    projections), and sets each call's context on it (``context_set``): installing processors
    walks every module of the UNet twice, tens of milliseconds a call for SDXL. Outside a call
    the processor holds no context and refuses to run.

    Args:
        unet: A diffusers ``UNet2DConditionModel``.

    Returns:
        The shared regional processor.
    """
    processors = _processors_for(unet, None)
    regional = next(p for p in processors.values() if isinstance(p, RegionalAttnProcessor))
    # set_attn_processor consumes the dict it is given: hand it a copy.
    unet.set_attn_processor(dict(processors))
    return regional


@contextmanager
def regional_attention_installed(
    unet: Any, context: RegionalContext
) -> Iterator[RegionalAttnProcessor]:
    """Install regional processors on ``unet`` for the ``with`` block, then restore the old ones.

    Args:
        unet: A diffusers ``UNet2DConditionModel``.
        context: The run's regions.

    Yields:
        The regional processor (shared by every cross-attention layer).
    """
    previous = dict(unet.attn_processors)
    processors = _processors_for(unet, context)
    regional = next(p for p in processors.values() if isinstance(p, RegionalAttnProcessor))
    # set_attn_processor consumes the dict it is given: hand it copies.
    unet.set_attn_processor(dict(processors))
    try:
        yield regional
    finally:
        unet.set_attn_processor(dict(previous))
