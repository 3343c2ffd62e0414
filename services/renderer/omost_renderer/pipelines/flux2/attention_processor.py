"""Regional joint attention for FLUX.2 as diffusers attention processors (no patched classes).

FLUX.2's transformer keeps FLUX.1's joint sequence ``[text, image]`` and forwards
``joint_attention_kwargs`` to its processors, whose stock versions accept an ``attention_mask``,
so the same regional mask (``joint_mask``) and schedule (``RegionalMask``) apply. Its
double-stream attention has FLUX.1's projections and outputs, so FLUX.1's processor serves it;
its single-stream blocks fuse the QKV and MLP input projections into one matrix
(``Flux2ParallelSelfAttention``) and get :class:`RegionalFlux2SingleAttnProcessor`. As for
FLUX.1, a processor holds only its block's index; without a mask, or at an unmasked block, it
computes exactly what diffusers' stock processor computes.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from diffusers.models.embeddings import apply_rotary_emb

from omost_renderer.pipelines.flux.attention_processor import (
    RegionalMask,
    RegionalProcessorBase,
    install_regional_processors,
)


class RegionalFlux2SingleAttnProcessor(RegionalProcessorBase):
    """``Flux2ParallelSelfAttnProcessor`` with an optional regional mask and base-pass blend.

    Args:
        block: Index of the block this processor serves (double-stream blocks first).
    """

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: Any = None,
        regional_mask: RegionalMask | None = None,
    ) -> torch.Tensor:
        """Single-stream attention and MLP of one FLUX.2 block, regional where the mask applies.

        Args:
            attn: The block's ``Flux2ParallelSelfAttention``.
            hidden_states: (B, T + N, D) the joint sequence.
            attention_mask: Passed through when no regional mask applies.
            image_rotary_emb: FLUX.2's rotary embedding of the joint positions.
            regional_mask: This call's mask and schedule, or ``None``.

        Returns:
            (B, T + N, D), as ``Flux2ParallelSelfAttnProcessor``.
        """
        # The same split of the fused projection as diffusers' processor.
        hidden_states = attn.to_qkv_mlp_proj(hidden_states)
        qkv_dim = 3 * attn.inner_dim
        mlp_dim = attn.mlp_hidden_dim * attn.mlp_mult_factor
        local_qkv = hidden_states.shape[-1] * qkv_dim // (qkv_dim + mlp_dim)
        qkv, mlp = torch.split(
            hidden_states, [local_qkv, hidden_states.shape[-1] - local_qkv], dim=-1
        )
        query, key, value = (x.reshape(*x.shape[:-1], -1, attn.head_dim) for x in qkv.chunk(3, -1))
        query, key = attn.norm_q(query), attn.norm_k(key)
        if image_rotary_emb is not None:
            # Typed as a pair by diffusers; with one tensor in, one tensor comes out.
            query = cast(torch.Tensor, apply_rotary_emb(query, image_rotary_emb, sequence_dim=1))
            key = cast(torch.Tensor, apply_rotary_emb(key, image_rotary_emb, sequence_dim=1))
        out = self._regional_attend(query, key, value, attention_mask, regional_mask)
        return attn.to_out(torch.cat([out, attn.mlp_act_fn(mlp)], dim=-1))  # type: ignore[no-any-return]


def install_regional_flux2_processors(transformer: Any) -> int:
    """Put regional processors on every attention layer of a FLUX.2 transformer.

    Args:
        transformer: A diffusers ``Flux2Transformer2DModel``.

    Returns:
        The number of blocks (double-stream plus single-stream).
    """
    return install_regional_processors(transformer, RegionalFlux2SingleAttnProcessor)
