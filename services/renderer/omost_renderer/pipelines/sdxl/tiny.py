"""Tiny random SDXL components built from configs in code: the whole pipeline on CPU in a second.

The shapes follow diffusers' own SDXL tests (two CLIP encoders whose features concatenate to the
UNet's cross-attention width, ``text_time`` added conditioning). As in SDXL (768 and 1280), the
two encoders differ in width, which is how single-file loaders tell them apart. The VAE has
four blocks so that, like SDXL's, it shrinks images eightfold. The tokenizers are the real CLIP
BPE vocabulary (from open_clip_torch's bundled merge file) when it is installed.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from omost_renderer.pipelines.clip_vocab import build_clip_tokenizer, find_bpe_file
from omost_renderer.pipelines.sdxl.encoding import TextEncoders
from omost_renderer.pipelines.sdxl.pipeline_sdxl import OmostSDXLPipeline

#: CLIP's vocabulary size; the tiny encoders embed every real token id.
VOCAB_SIZE = 49408
#: Widths of the CLIP-L and OpenCLIP stand-ins.
CLIP_WIDTH = 32
OPEN_CLIP_WIDTH = 48
TIME_EMBED_DIM = 8


def tiny_unet() -> Any:
    """A two-level SDXL-style UNet with cross-attention width 80 (= 32 + 48)."""
    return UNet2DConditionModel(  # type: ignore[no-untyped-call]
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED_DIM,
        transformer_layers_per_block=(1, 2),
        # 6 time ids embedded to 8 each, plus the pooled (second encoder's) text embedding.
        projection_class_embeddings_input_dim=6 * TIME_EMBED_DIM + OPEN_CLIP_WIDTH,
        cross_attention_dim=CLIP_WIDTH + OPEN_CLIP_WIDTH,
        norm_num_groups=1,
    )


def tiny_vae(**overrides: Any) -> Any:
    """A four-block VAE (downsampling 8x, like SDXL's) with few channels.

    Args:
        **overrides: ``AutoencoderKL`` config values to change (another family's latent
            scaling, shift or quant convs).
    """
    config: dict[str, Any] = {
        "block_out_channels": (8, 8, 16, 16),
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "latent_channels": 4,
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "sample_size": 64,
    }
    return AutoencoderKL(**(config | overrides))  # type: ignore[no-untyped-call]


def _text_config(width: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=1,
        hidden_size=width,
        intermediate_size=37,
        layer_norm_eps=1e-5,
        num_attention_heads=4,
        num_hidden_layers=3,
        hidden_act="gelu",
        projection_dim=width,
        vocab_size=VOCAB_SIZE,
        max_position_embeddings=77,
    )


def tiny_text_encoders() -> TextEncoders:
    """Two tiny CLIP text encoders with SDXL's tokenizers (real BPE vocabulary when available)."""
    bpe = find_bpe_file()
    if bpe is None:
        raise RuntimeError("open_clip_torch (for CLIP's BPE vocabulary) is not installed")
    return TextEncoders(
        tokenizer=build_clip_tokenizer(bpe),
        tokenizer_2=build_clip_tokenizer(bpe, pad_token="!"),
        text_encoder=CLIPTextModel(_text_config(CLIP_WIDTH)),
        text_encoder_2=CLIPTextModelWithProjection(_text_config(OPEN_CLIP_WIDTH)),
    )


def tiny_components(seed: int = 0) -> dict[str, Any]:
    """UNet, VAE and text encoders with random weights drawn from ``seed``, in eval mode."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        unet, vae, encoders = tiny_unet(), tiny_vae(), tiny_text_encoders()
    for module in (unet, vae, encoders.text_encoder, encoders.text_encoder_2):
        module.eval()
    return {"unet": unet, "vae": vae, "encoders": encoders}


def build_tiny_renderer(seed: int = 0, **options: Any) -> OmostSDXLPipeline:
    """The full Omost pipeline on tiny random components, for CPU tests and local development.

    Args:
        seed: Seed of the random weights.
        **options: Passed to :class:`OmostSDXLPipeline` (``preview_every``,
            ``batched_guidance``).

    Returns:
        A ``CanvasRenderer``; a 64x64 render takes about a second on one CPU core.
    """
    return OmostSDXLPipeline(**tiny_components(seed), model_name="tiny", **options)
