"""Tiny random FLUX.2 klein components built from configs in code, as diffusers' own tests do.

A two-plus-two-block ``Flux2Transformer2DModel`` (double- and single-stream), an 8x
``AutoencoderKLFlux2`` with four latent channels (patchified 2x2 into the transformer's 16
features) and random batch-norm statistics (so the normalisation is exercised, not an identity),
and a three-layer Qwen3 whose three hidden layers stack into the transformer's text width, with a
byte-level Qwen-style tokenizer built in code (no Qwen tokenizer ships offline). A 64x64 render
takes well under a second on one CPU core.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKLFlux2, Flux2Transformer2DModel
from transformers import Qwen3Config, Qwen3ForCausalLM

from omost_renderer.pipelines.flux2.encoding import Flux2TextEncoder
from omost_renderer.pipelines.flux2.pipeline_flux2 import OmostFlux2Pipeline
from omost_renderer.pipelines.flux2.sampling import FLUX2_SCHEDULER
from omost_renderer.pipelines.flux2.tiny_qwen_tokenizer import (
    TINY_QWEN_VOCAB,
    build_tiny_qwen_tokenizer,
)

TINY_FLUX2 = "tiny-flux2"
#: Width of the tiny Qwen3's hidden states.
QWEN_WIDTH = 16
#: The tiny Qwen3's hidden layers that are stacked (klein stacks 9, 18 and 27 of 36).
TINY_LAYERS = (1, 2, 3)
#: Width of the tiny text features: three stacked hidden layers.
TEXT_WIDTH = QWEN_WIDTH * len(TINY_LAYERS)
LATENT_CHANNELS = 4


def tiny_flux2_transformer() -> Any:
    """A FLUX.2 transformer with 2 double- and 2 single-stream blocks of width 32."""
    return Flux2Transformer2DModel(  # type: ignore[no-untyped-call]
        patch_size=1,
        in_channels=LATENT_CHANNELS * 4,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=TEXT_WIDTH,
        timestep_guidance_channels=16,
        axes_dims_rope=(4, 4, 4, 4),
        guidance_embeds=False,
    )


def tiny_flux2_vae() -> Any:
    """A four-block ``AutoencoderKLFlux2`` (8x) with random batch-norm running statistics."""
    vae: Any = AutoencoderKLFlux2(  # type: ignore[no-untyped-call]
        block_out_channels=(8, 8, 16, 16),
        latent_channels=LATENT_CHANNELS,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=64,
    )
    features = vae.bn.running_mean.shape[0]
    with torch.no_grad():
        vae.bn.running_mean.copy_(torch.randn(features) * 0.5)
        vae.bn.running_var.copy_(torch.rand(features) + 0.5)
    return vae


def tiny_flux2_encoder() -> Flux2TextEncoder:
    """A three-layer Qwen3 with a byte-level tokenizer built in code."""
    qwen = Qwen3ForCausalLM(
        Qwen3Config(
            vocab_size=TINY_QWEN_VOCAB,
            hidden_size=QWEN_WIDTH,
            intermediate_size=32,
            num_hidden_layers=len(TINY_LAYERS),
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=8,
            max_position_embeddings=512,
            tie_word_embeddings=True,
        )
    )
    return Flux2TextEncoder(build_tiny_qwen_tokenizer(), qwen, layers=TINY_LAYERS)


def tiny_flux2_components(seed: int = 0) -> dict[str, Any]:
    """Transformer, VAE and text encoder with random weights from ``seed``, in eval mode."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        transformer, vae = tiny_flux2_transformer(), tiny_flux2_vae()
        encoder = tiny_flux2_encoder()
    for module in (transformer, vae, encoder.text_encoder):
        module.eval()
    return {"transformer": transformer, "vae": vae, "encoder": encoder}


def build_tiny_flux2(
    seed: int = 0, *, distilled: bool = True, **options: Any
) -> OmostFlux2Pipeline:
    """The regional FLUX.2 pipeline on tiny random components, for CPU tests and development.

    Args:
        seed: Seed of the random weights.
        distilled: klein-like (no guidance, the default) or klein-base-like (guidance and a
            negative prompt).
        **options: Passed to :class:`OmostFlux2Pipeline` (``schedule``, ``preview_every``,
            ``regional``).

    Returns:
        A ``CanvasRenderer`` named ``tiny-flux2``.
    """
    options.setdefault("model_name", TINY_FLUX2)
    options.setdefault("scheduler_config", FLUX2_SCHEDULER)
    return OmostFlux2Pipeline(**tiny_flux2_components(seed), is_distilled=distilled, **options)
