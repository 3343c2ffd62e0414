"""Models of the GPU suite: full-size SDXL, FLUX.1 and FLUX.2 klein from configs, random weights.

No download: every component is built from its published shape (SDXL base, FLUX.1-dev) and
initialised at random on the device itself, in the suite's dtype (a 12B FLUX transformer built on
the CPU in float32 would take minutes and 48 GB). The tokenizers are the tiny pipelines' (CLIP's
real BPE vocabulary from open_clip_torch, T5's built in code): token ids only have to be valid.
Random weights give random images but the real compute, which is all a timing needs. The smoke
sizes use the tiny pipelines on the CPU instead (``SMOKE``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from omost_renderer.pipelines.flux.pipeline_flux import OmostFluxPipeline
from omost_renderer.pipelines.sdxl.pipeline_sdxl import OmostSDXLPipeline
from omost_schema import Canvas, GlobalDescription, LocalDescription


@dataclass(frozen=True)
class SuiteScale:
    """Sizes of one suite run.

    Attributes:
        device: Where the models run.
        smoke: Tiny models on the CPU (the code paths, no meaningful figures).
        sdxl_size: SDXL (height, width) in pixels.
        sdxl_steps: SDXL denoising steps per render.
        concurrency: Jobs arriving together, for images per minute (at most 8: each held job
            keeps its latents and conditioning on the device).
        flux_size: FLUX.1 (height, width) in pixels.
        flux_steps: FLUX.1 step counts measured (schnell-like and dev-like).
        flux2_steps: FLUX.2 klein step counts measured (at ``flux_size``).
    """

    device: str
    smoke: bool
    sdxl_size: tuple[int, int]
    sdxl_steps: int
    concurrency: tuple[int, ...]
    flux_size: tuple[int, int]
    flux_steps: tuple[int, ...]
    flux2_steps: tuple[int, ...]


FULL = SuiteScale("cuda", False, (1152, 896), 25, (1, 2, 4, 8), (1024, 1024), (4, 28), (4,))
SMOKE = SuiteScale("cpu", True, (64, 64), 2, (1, 2, 4), (64, 64), (2,), (2,))


@contextmanager
def built_on(device: str, dtype: torch.dtype) -> Iterator[None]:
    """Build modules directly on ``device`` in ``dtype`` within the block (restored after).

    Args:
        device: Where parameters are created.
        dtype: A floating dtype for new parameters.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def _clip_config(width: int, layers: int, heads: int, act: str) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
        num_attention_heads=heads, projection_dim=width, hidden_act=act,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=1, max_position_embeddings=77,
    )  # fmt: skip


def _tokenizer(pad_token: str | None = None) -> Any:
    from omost_renderer.pipelines.clip_vocab import build_clip_tokenizer, find_bpe_file

    bpe = find_bpe_file()
    if bpe is None:
        raise RuntimeError("open_clip_torch (CLIP's BPE vocabulary) is not installed")
    return (
        build_clip_tokenizer(bpe)
        if pad_token is None
        else build_clip_tokenizer(bpe, pad_token=pad_token)
    )


def _sdxl_vae(**overrides: Any) -> Any:
    from diffusers import AutoencoderKL

    config: dict[str, Any] = {
        "block_out_channels": (128, 256, 512, 512), "layers_per_block": 2,
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "latent_channels": 4, "sample_size": 1024, "scaling_factor": 0.13025,
    }  # fmt: skip
    return AutoencoderKL(**(config | overrides))  # type: ignore[no-untyped-call]


def full_sdxl(device: str, dtype: torch.dtype) -> OmostSDXLPipeline:
    """SDXL base's shapes with random weights: UNet in float16, text encoders in ``dtype``.

    The VAE runs in float32, as ``loading.vae_dtype`` picks for SDXL's stock VAE in float16.
    """
    from omost_renderer.pipelines.sdxl.encoding import TextEncoders
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from benchmarks.bench_attention import sdxl_unet  # the same UNet as the attention bench

    with built_on(device, dtype):
        unet = sdxl_unet(device)
        encoders = TextEncoders(
            tokenizer=_tokenizer(),
            tokenizer_2=_tokenizer(pad_token="!"),
            text_encoder=CLIPTextModel(_clip_config(768, 12, 12, "quick_gelu")),
            text_encoder_2=CLIPTextModelWithProjection(_clip_config(1280, 32, 20, "gelu")),
        )
    with built_on(device, torch.float32):
        vae = _sdxl_vae()
    for module in (unet, vae, encoders.text_encoder, encoders.text_encoder_2):
        module.eval()
    return OmostSDXLPipeline(unet, vae, encoders, model_name="sdxl-random")


def tiny_sdxl() -> OmostSDXLPipeline:
    """The tiny SDXL pipeline (CPU, float32) for smoke runs."""
    from omost_renderer.pipelines.sdxl.tiny import build_tiny_renderer

    return build_tiny_renderer()


def full_flux(device: str, dtype: torch.dtype, *, regional: bool) -> OmostFluxPipeline:
    """FLUX.1-dev's shapes with random weights, everything in ``dtype`` (bfloat16 on a GPU).

    About 12B (transformer) + 4.7B (T5-XXL) parameters: 34 GB in bfloat16.

    Args:
        device: Where it runs.
        dtype: Weights' dtype.
        regional: Install the regional processors (``False``: diffusers' stock ones).
    """
    from diffusers import FluxTransformer2DModel
    from omost_renderer.pipelines.flux.encoding import FluxTextEncoders
    from omost_renderer.pipelines.tiny_t5_tokenizer import build_tiny_t5_tokenizer
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    with built_on(device, dtype):
        transformer: Any = FluxTransformer2DModel(guidance_embeds=True)  # type: ignore[no-untyped-call]
        encoders = FluxTextEncoders(
            tokenizer=_tokenizer(),
            text_encoder=CLIPTextModel(_clip_config(768, 12, 12, "quick_gelu")),
            tokenizer_2=build_tiny_t5_tokenizer(),
            text_encoder_2=T5EncoderModel(
                T5Config(  # type: ignore[call-arg]  # decoder_start_token_id goes to **kwargs
                    vocab_size=32128,
                    d_model=4096,
                    d_kv=64,
                    d_ff=10240,
                    num_layers=24,
                    num_heads=64,
                    feed_forward_proj="gated-gelu",
                    decoder_start_token_id=0,
                )
            ),
        )
        vae = _sdxl_vae(latent_channels=16, scaling_factor=0.3611, shift_factor=0.1159,
                        use_quant_conv=False, use_post_quant_conv=False)  # fmt: skip
    for module in (transformer, vae, encoders.text_encoder, encoders.text_encoder_2):
        module.eval()
    return OmostFluxPipeline(
        transformer, vae, encoders, model_name="flux-random", regional=regional
    )


def tiny_flux(*, regional: bool) -> OmostFluxPipeline:
    """The tiny FLUX.1 pipeline (CPU, float32) for smoke runs."""
    from omost_renderer.pipelines.flux.tiny import build_tiny_flux

    return build_tiny_flux(regional=regional)


def flux2_klein_modules(device: str, dtype: torch.dtype) -> tuple[Any, Any, Any]:
    """FLUX.2 klein 4B's transformer, Qwen3-4B and VAE with random weights, in ``dtype``.

    The shapes are klein 4B's published configs: 5 double- and 20 single-stream blocks of 24
    heads of 128, text width 7680 (Qwen3-4B's layers 9, 18 and 27 stacked), 32 latent channels.

    Returns:
        ``(transformer, text_encoder, vae)`` in eval mode.
    """
    from diffusers import AutoencoderKLFlux2, Flux2Transformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    with built_on(device, dtype):
        transformer: Any = Flux2Transformer2DModel(  # type: ignore[no-untyped-call]
            patch_size=1, in_channels=128, num_layers=5, num_single_layers=20,
            attention_head_dim=128, num_attention_heads=24, joint_attention_dim=7680,
            mlp_ratio=3.0, axes_dims_rope=(32, 32, 32, 32), rope_theta=2000,
            timestep_guidance_channels=256, guidance_embeds=False,
        )  # fmt: skip
        config = Qwen3Config(
            vocab_size=151936, hidden_size=2560, intermediate_size=9728,
            num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
            head_dim=128, max_position_embeddings=40960, tie_word_embeddings=True,
        )  # fmt: skip
        qwen = Qwen3ForCausalLM(config)
        vae: Any = AutoencoderKLFlux2()  # type: ignore[no-untyped-call]
    for module in (transformer, vae, qwen):
        module.eval()
    return transformer, qwen, vae


def full_flux2(device: str, dtype: torch.dtype, *, regional: bool) -> Any:
    """FLUX.2 klein 4B (``flux2_klein_modules``): about 8B parameters, 16 GB in bfloat16.

    Args:
        device: Where it runs.
        dtype: Weights' dtype (bfloat16 on a GPU).
        regional: Install the regional processors (``False``: diffusers' stock ones).
    """
    from omost_renderer.pipelines.flux2.encoding import Flux2TextEncoder
    from omost_renderer.pipelines.flux2.pipeline_flux2 import OmostFlux2Pipeline
    from omost_renderer.pipelines.flux2.tiny_qwen_tokenizer import build_tiny_qwen_tokenizer

    transformer, qwen, vae = flux2_klein_modules(device, dtype)
    encoder = Flux2TextEncoder(build_tiny_qwen_tokenizer(), qwen)
    return OmostFlux2Pipeline(
        transformer, vae, encoder, model_name="flux2-klein-random", regional=regional
    )


def tiny_flux2(*, regional: bool) -> Any:
    """The tiny FLUX.2 klein pipeline (CPU, float32) for smoke runs."""
    from omost_renderer.pipelines.flux2.tiny import build_tiny_flux2

    return build_tiny_flux2(regional=regional)


def suite_canvas() -> Canvas:
    """A canvas shaped like an Omost answer: a global description and three local regions."""

    def local(location: str, area: str, colour: str, description: str) -> LocalDescription:
        return LocalDescription(
            location=location, offset="no offset", area=area, distance_to_viewer=3.0,
            description=description,
            detailed_descriptions=[f"{description}, seen in detail.", "Soft evening light."],
            tags=description, atmosphere="Calm.", style="Oil painting.", quality_meta="Detailed.",
            HTML_web_color_name=colour,
        )  # fmt: skip

    glob = GlobalDescription(
        description="A dragon flying over a castle by a lake at sunset.",
        detailed_descriptions=["The sky glows orange.", "Mist rises from the lake."],
        tags="dragon, castle, lake, sunset", HTML_web_color_name="darkslateblue",
    )  # fmt: skip
    return Canvas(
        global_description=glob,
        local_descriptions=[
            local("on the left", "a large vertical area", "red", "A red dragon"),
            local("on the right", "a medium-sized square area", "gray", "A stone castle"),
            local("on the bottom", "a large horizontal area", "teal", "A still lake"),
        ],
    )
