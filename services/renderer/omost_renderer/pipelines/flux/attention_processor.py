"""Regional joint attention for FLUX.1 as diffusers attention processors (no patched classes).

:func:`install_regional_processors` puts one :class:`RegionalFluxAttnProcessor` on every attention
layer of a ``FluxTransformer2DModel`` with ``set_attn_processor``, once, when the pipeline is
built. A processor holds only its block's index (fixed by the model's layout), never anything of
a render: the mask of each call arrives through the transformer's ``joint_attention_kwargs`` as
``regional_mask`` (diffusers forwards every keyword the processor's ``__call__`` names). Without
a mask, or at a block the schedule leaves unmasked, the processor computes exactly what diffusers'
``FluxAttnProcessor`` computes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.embeddings import apply_rotary_emb


@dataclass(frozen=True)
class RegionalMask:
    """The regional mask of one transformer call, passed as ``joint_attention_kwargs``.

    In a step batch of several jobs (``step_inputs``) the text of every job is padded to the
    longest; ``bias`` then has one row per image, and ``unmasked`` hides the padding keys where
    the attention is otherwise unmasked (blocks the schedule skips, the base pass of the blend).

    Attributes:
        bias: (1 or B, 1, T + N, T + N) additive mask in the queries' dtype
            (``joint_mask.joint_bias``).
        text_length: ``T``, the text tokens at the front of the joint sequence.
        every: The mask applies at blocks whose index is a multiple of this (``regional_blocks``;
            double-stream blocks count first, then the single-stream ones).
        base_ratio: Share of an unmasked attention pass blended into the image tokens' output at
            masked blocks; at 0 no unmasked pass runs. A (B, 1, 1) tensor gives each row its own
            share (0 for a job past its regional steps).
        unmasked: The mask of the unmasked attention: ``None`` (nothing hidden) or (B, 1, T + N,
            T + N) hiding only padding keys.
    """

    bias: torch.Tensor
    text_length: int
    every: int = 1
    base_ratio: float | torch.Tensor = 0.0
    unmasked: torch.Tensor | None = None

    def applies(self, block: int) -> bool:
        """Whether the block with this index is masked."""
        return block % self.every == 0


def _heads(x: torch.Tensor, head_dim: int) -> torch.Tensor:
    return x.reshape(*x.shape[:-1], -1, head_dim)


def _projections(
    attn: Any, states: torch.Tensor, *, added: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Query, key and value (B, S, D) of ``states``: one fused GEMM when the layer is fused.

    ``OMOST_RENDERER_FUSE_QKV`` gives each layer ``to_qkv`` (and ``to_added_qkv`` for the text
    stream) next to the separate projections, as diffusers' ``fuse_projections`` does.
    """
    if getattr(attn, "fused_projections", False):
        fused = attn.to_added_qkv if added else attn.to_qkv
        q, k, v = fused(states).chunk(3, dim=-1)
        return q, k, v
    if added:
        return attn.add_q_proj(states), attn.add_k_proj(states), attn.add_v_proj(states)
    return attn.to_q(states), attn.to_k(states), attn.to_v(states)


class RegionalProcessorBase:
    """What the regional FLUX processors share: the block index, the dispatch, the mask and blend.

    Args:
        block: Index of the block this processor serves (double-stream blocks first).
    """

    # Read by diffusers' attention dispatch, as on its own processors.
    _attention_backend: Any = None
    _parallel_config: Any = None

    def __init__(self, block: int) -> None:
        self.block = block

    def _attend(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: Any
    ) -> torch.Tensor:
        out = dispatch_attention_fn(
            query,
            key,
            value,
            attn_mask=mask,
            backend=self._attention_backend,
            parallel_config=self._parallel_config,
        )
        return out.flatten(2, 3).to(query.dtype)

    def _regional_attend(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        regional_mask: RegionalMask | None,
    ) -> torch.Tensor:
        # Unmasked (diffusers' own computation) unless this call's schedule masks this block.
        if regional_mask is None:
            return self._attend(query, key, value, attention_mask)
        if not regional_mask.applies(self.block):
            return self._attend(query, key, value, regional_mask.unmasked)
        out = self._attend(query, key, value, regional_mask.bias)
        ratio = regional_mask.base_ratio
        if isinstance(ratio, torch.Tensor) or ratio > 0:
            # InstantX's blend: the image tokens mix in an unmasked pass; text stays masked.
            base = self._attend(query, key, value, regional_mask.unmasked)
            t = regional_mask.text_length
            image = out[:, t:] * (1 - ratio) + base[:, t:] * ratio
            out = torch.cat([out[:, :t], image], dim=1)
        return out


class RegionalFluxAttnProcessor(RegionalProcessorBase):
    """``FluxAttnProcessor`` with an optional regional mask and base-pass blend.

    Args:
        block: Index of the block this processor serves (double-stream blocks first).
    """

    def _qkv(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None,
        image_rotary_emb: Any,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # The same projections, norms and order as diffusers' FluxAttnProcessor.
        q, k, v = _projections(attn, hidden_states)
        query = attn.norm_q(_heads(q, attn.head_dim))
        key = attn.norm_k(_heads(k, attn.head_dim))
        value = _heads(v, attn.head_dim)
        if encoder_hidden_states is not None and attn.added_kv_proj_dim is not None:
            eq, ek, ev = _projections(attn, encoder_hidden_states, added=True)
            eq = attn.norm_added_q(_heads(eq, attn.head_dim))
            ek = attn.norm_added_k(_heads(ek, attn.head_dim))
            ev = _heads(ev, attn.head_dim)
            query = torch.cat([eq, query], dim=1)
            key = torch.cat([ek, key], dim=1)
            value = torch.cat([ev, value], dim=1)
        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
            key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)
        return query, key, value

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: Any = None,
        regional_mask: RegionalMask | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Joint attention of one FLUX block, regional where ``regional_mask`` applies.

        Args:
            attn: The block's ``FluxAttention``.
            hidden_states: (B, N, D) image tokens (double-stream) or (B, T + N, D) (single).
            encoder_hidden_states: (B, T, D) text tokens (double-stream blocks only).
            attention_mask: Passed through when no regional mask applies.
            image_rotary_emb: FLUX's rotary embedding of ``[text, image]`` positions.
            regional_mask: This call's mask and schedule, or ``None``.

        Returns:
            As ``FluxAttnProcessor``: ``(image, text)`` outputs for double-stream blocks, the
            joint output for single-stream ones.
        """
        query, key, value = self._qkv(attn, hidden_states, encoder_hidden_states, image_rotary_emb)
        out = self._regional_attend(query, key, value, attention_mask, regional_mask)
        if encoder_hidden_states is None:
            return out
        text, image = out.split_with_sizes(
            [encoder_hidden_states.shape[1], out.shape[1] - encoder_hidden_states.shape[1]], dim=1
        )
        image = attn.to_out[1](attn.to_out[0](image.contiguous()))
        return image, attn.to_add_out(text.contiguous())


def install_regional_processors(
    transformer: Any, single: Callable[[int], Any] = RegionalFluxAttnProcessor
) -> int:
    """Put a regional processor on every attention layer of a FLUX (or FLUX.2) transformer.

    Blocks are numbered double-stream first, then single-stream (the order ``regional_blocks``
    counts in).

    Args:
        transformer: A diffusers ``FluxTransformer2DModel`` (or ``Flux2Transformer2DModel``).
        single: The processor of a single-stream block, from its block number (FLUX.2's fuse
            their projections); double-stream blocks get a :class:`RegionalFluxAttnProcessor`.

    Returns:
        The number of blocks (double-stream plus single-stream).
    """
    double = len(transformer.transformer_blocks)
    processors: dict[str, Any] = {}
    for name in transformer.attn_processors:
        # "transformer_blocks.3.attn.processor" or "single_transformer_blocks.7.attn.processor".
        kind, index = name.split(".")[:2]
        if kind == "single_transformer_blocks":
            processors[name] = single(double + int(index))
        else:
            processors[name] = RegionalFluxAttnProcessor(int(index))
    transformer.set_attn_processor(processors)
    return double + len(transformer.single_transformer_blocks)
