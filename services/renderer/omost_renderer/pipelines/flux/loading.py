"""Build the regional FLUX.1 renderer from a hub id, a diffusers folder or a single file.

Transformer and text encoders run in the requested dtype (bfloat16 is FLUX's own; float16 on
CUDA by default, as for SDXL); the VAE follows ``loading.vae_dtype``. The scheduler config comes
from the model (schnell's has no dynamic shifting, dev's has); FLUX.1-schnell has no distilled
guidance (``guidance_embeds: false``), so ``cfg`` is refused for it and mapped to the guidance
value for dev.
"""

from __future__ import annotations

from typing import Any

import torch

from omost_renderer.pipelines.component_loading import place_components, single_file_transformer
from omost_renderer.pipelines.flux.encoding import FluxTextEncoders
from omost_renderer.pipelines.flux.pipeline_flux import OmostFluxPipeline
from omost_renderer.pipelines.regional_schedule import RegionalSchedule
from omost_renderer.pipelines.text_cache import DEFAULT_TEXT_CACHE_BYTES


def _components(model: str, dtype: torch.dtype, transformer: Any | None = None) -> dict[str, Any]:
    """Every FLUX component of a diffusers folder or hub id (``transformer`` given or loaded)."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import AutoTokenizer, CLIPTextModel, CLIPTokenizer, T5EncoderModel

    if transformer is None:
        transformer = FluxTransformer2DModel.from_pretrained(  # type: ignore[no-untyped-call]
            model, subfolder="transformer", torch_dtype=dtype
        )
    return {
        "transformer": transformer,
        "vae": AutoencoderKL.from_pretrained(model, subfolder="vae"),  # type: ignore[no-untyped-call]
        "encoders": FluxTextEncoders(
            tokenizer=CLIPTokenizer.from_pretrained(model, subfolder="tokenizer"),
            text_encoder=CLIPTextModel.from_pretrained(
                model, subfolder="text_encoder", torch_dtype=dtype
            ),
            tokenizer_2=AutoTokenizer.from_pretrained(model, subfolder="tokenizer_2"),
            text_encoder_2=T5EncoderModel.from_pretrained(
                model, subfolder="text_encoder_2", torch_dtype=dtype
            ),
        ),
        "scheduler_config": dict(
            FlowMatchEulerDiscreteScheduler.load_config(model, subfolder="scheduler")
        ),
    }


def load_flux_components(
    model: str, dtype: torch.dtype, single_file_config: str | None = None
) -> dict[str, Any]:
    """Load FLUX.1 from a folder, a hub id, or a single transformer ``.safetensors`` file.

    Args:
        model: The reference.
        dtype: Weights' dtype.
        single_file_config: For a single file: the diffusers folder or hub id that holds the
            configs, the VAE and the text encoders (a single FLUX file is the transformer only).

    Returns:
        Keyword arguments of :class:`OmostFluxPipeline`.

    Raises:
        FileNotFoundError: For a missing single file.
        ValueError: For a single file without ``single_file_config``.
    """
    if not model.endswith(".safetensors"):
        return _components(model, dtype)
    from diffusers import FluxTransformer2DModel

    transformer, config = single_file_transformer(
        FluxTransformer2DModel, model, single_file_config, dtype, "FLUX", "its VAE and encoders"
    )
    return _components(config, dtype, transformer)


def flux_from_components(
    components: dict[str, Any],
    device: str,
    dtype: torch.dtype,
    vae_dtype: torch.dtype,
    name: str,
    schedule: RegionalSchedule | None = None,
    *,
    text_cache_bytes: int = DEFAULT_TEXT_CACHE_BYTES,
) -> OmostFluxPipeline:
    """Move loaded components to ``device`` and build the pipeline named ``name``.

    ``text_cache_bytes`` bounds the pipeline's cache of encoded region texts (0: none).
    """
    encoders: FluxTextEncoders = components["encoders"]
    text_encoders = (encoders.text_encoder, encoders.text_encoder_2)
    place_components(components, text_encoders, device, dtype, vae_dtype)
    return OmostFluxPipeline(
        **components, model_name=name, schedule=schedule, text_cache_bytes=text_cache_bytes
    )
