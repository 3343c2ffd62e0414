"""Tiny random FLUX.1 components built from configs in code, as diffusers' own FLUX tests do.

A two-plus-two-block ``FluxTransformer2DModel`` (double- and single-stream), an 8x VAE with four
latent channels (packed 2x2 into 16 features) and FLUX's scale and shift, a tiny CLIP text
encoder with CLIP's real BPE tokenizer (open_clip_torch's merge file) for the pooled vector, and a
tiny T5 encoder with a tokenizer built in code (no T5 tokenizer ships offline). A 64x64 render
takes well under a second on one CPU core.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import FluxTransformer2DModel
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

from omost_renderer.pipelines.clip_vocab import build_clip_tokenizer, find_bpe_file
from omost_renderer.pipelines.flow_match import FLUX_DEV_SCHEDULER
from omost_renderer.pipelines.flux.encoding import FluxTextEncoders
from omost_renderer.pipelines.flux.pipeline_flux import OmostFluxPipeline
from omost_renderer.pipelines.sdxl.tiny import VOCAB_SIZE, tiny_vae
from omost_renderer.pipelines.tiny_t5_tokenizer import TINY_T5_VOCAB, build_tiny_t5_tokenizer

TINY_FLUX = "tiny-flux"
#: Widths of the tiny CLIP (pooled) and T5 (sequence) encoders.
CLIP_WIDTH = 32
T5_WIDTH = 32
LATENT_CHANNELS = 4


def tiny_transformer(*, guidance: bool = True) -> Any:
    """A FLUX transformer with 2 double- and 2 single-stream blocks of width 32.

    Args:
        guidance: Distilled guidance embedding (FLUX.1-dev) or none (schnell).
    """
    return FluxTransformer2DModel(  # type: ignore[no-untyped-call]
        patch_size=1,
        in_channels=LATENT_CHANNELS * 4,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=T5_WIDTH,
        pooled_projection_dim=CLIP_WIDTH,
        guidance_embeds=guidance,
        axes_dims_rope=(4, 6, 6),
    )


def tiny_flux_vae() -> Any:
    """A four-block VAE (8x, like FLUX's) with FLUX's scaling and shift factors."""
    return tiny_vae(
        latent_channels=LATENT_CHANNELS,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


def tiny_flux_encoders() -> FluxTextEncoders:
    """A tiny CLIP (real BPE tokenizer) and a tiny T5 (tokenizer built in code)."""
    bpe = find_bpe_file()
    if bpe is None:
        raise RuntimeError("open_clip_torch (for CLIP's BPE vocabulary) is not installed")
    clip = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=1,
            hidden_size=CLIP_WIDTH,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=VOCAB_SIZE,
            max_position_embeddings=77,
            projection_dim=CLIP_WIDTH,
        )
    )
    t5 = T5EncoderModel(
        T5Config(  # type: ignore[call-arg]  # decoder_start_token_id goes to **kwargs
            vocab_size=TINY_T5_VOCAB,
            d_model=T5_WIDTH,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )
    return FluxTextEncoders(
        tokenizer=build_clip_tokenizer(bpe),
        text_encoder=clip,
        tokenizer_2=build_tiny_t5_tokenizer(),
        text_encoder_2=t5,
    )


def tiny_flux_components(seed: int = 0, *, guidance: bool = True) -> dict[str, Any]:
    """Transformer, VAE and text encoders with random weights from ``seed``, in eval mode."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        transformer, vae = tiny_transformer(guidance=guidance), tiny_flux_vae()
        encoders = tiny_flux_encoders()
    for module in (transformer, vae, encoders.text_encoder, encoders.text_encoder_2):
        module.eval()
    return {"transformer": transformer, "vae": vae, "encoders": encoders}


def build_tiny_flux(seed: int = 0, *, guidance: bool = True, **options: Any) -> OmostFluxPipeline:
    """The regional FLUX pipeline on tiny random components, for CPU tests and development.

    Args:
        seed: Seed of the random weights.
        guidance: FLUX.1-dev-like distilled guidance (default) or schnell-like none.
        **options: Passed to :class:`OmostFluxPipeline` (``schedule``, ``preview_every``,
            ``regional``).

    Returns:
        A ``CanvasRenderer`` named ``tiny-flux``.
    """
    components = tiny_flux_components(seed, guidance=guidance)
    options.setdefault("model_name", TINY_FLUX)
    options.setdefault("scheduler_config", FLUX_DEV_SCHEDULER)
    return OmostFluxPipeline(**components, **options)
