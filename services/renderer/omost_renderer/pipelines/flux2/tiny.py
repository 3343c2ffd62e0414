"""A tiny random FLUX.2 transformer built from its config, as diffusers' own FLUX.2 tests do."""

from __future__ import annotations

from typing import Any

from diffusers import Flux2Transformer2DModel

#: Width of the tiny text features (FLUX.2 klein stacks three hidden layers of its Qwen3 encoder).
TEXT_WIDTH = 48


def tiny_flux2_transformer() -> Any:
    """A FLUX.2 transformer with 2 double- and 2 single-stream blocks of width 32."""
    return Flux2Transformer2DModel(  # type: ignore[no-untyped-call]
        patch_size=1,
        in_channels=16,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=TEXT_WIDTH,
        timestep_guidance_channels=16,
        axes_dims_rope=(4, 4, 4, 4),
        guidance_embeds=False,
    )
