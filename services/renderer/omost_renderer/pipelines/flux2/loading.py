"""Build the regional FLUX.2 klein renderer from a hub id, a diffusers folder or a single file.

A folder or hub id is in diffusers' ``Flux2KleinPipeline`` layout (``transformer``, ``vae``,
``text_encoder``, ``tokenizer``, ``scheduler``, and ``is_distilled`` in ``model_index.json``:
klein 4B/9B are step-distilled and take no guidance, klein base takes classifier-free guidance).
A single ``.safetensors`` file is the transformer alone (BFL's or diffusers' key names, converted
by diffusers' ``Flux2Transformer2DModel.from_single_file``); ``single_file_config`` names the
klein folder or hub id that holds its config, VAE, text encoder and tokenizer. Transformer and
text encoder run in the requested dtype (bfloat16 is FLUX.2's own); the VAE follows
``loading.vae_dtype``.
"""

from __future__ import annotations

from typing import Any

import torch

from omost_renderer.pipelines.component_loading import place_components, single_file_transformer
from omost_renderer.pipelines.flux2.encoding import Flux2TextEncoder, stacked_layers
from omost_renderer.pipelines.flux2.pipeline_flux2 import OmostFlux2Pipeline
from omost_renderer.pipelines.regional_schedule import RegionalSchedule
from omost_renderer.pipelines.text_cache import DEFAULT_TEXT_CACHE_BYTES


def _components(model: str, dtype: torch.dtype, transformer: Any | None = None) -> dict[str, Any]:
    """Every klein component of a diffusers folder or hub id (``transformer`` given or loaded)."""
    from diffusers import (
        AutoencoderKLFlux2,
        DiffusionPipeline,
        FlowMatchEulerDiscreteScheduler,
        Flux2Transformer2DModel,
    )
    from transformers import AutoTokenizer, Qwen3ForCausalLM

    if transformer is None:
        transformer = Flux2Transformer2DModel.from_pretrained(  # type: ignore[no-untyped-call]
            model, subfolder="transformer", torch_dtype=dtype
        )
    index = DiffusionPipeline.load_config(model)
    qwen = Qwen3ForCausalLM.from_pretrained(model, subfolder="text_encoder", torch_dtype=dtype)
    layers = stacked_layers(int(qwen.config.num_hidden_layers))
    width = len(layers) * int(qwen.config.hidden_size)
    if width != transformer.config.joint_attention_dim:
        raise ValueError(
            f"the text encoder's stacked layers {layers} give {width} features; the transformer"
            f" takes {transformer.config.joint_attention_dim}"
        )
    return {
        "transformer": transformer,
        "vae": AutoencoderKLFlux2.from_pretrained(model, subfolder="vae"),  # type: ignore[no-untyped-call]
        "encoder": Flux2TextEncoder(
            tokenizer=AutoTokenizer.from_pretrained(model, subfolder="tokenizer"),
            text_encoder=qwen,
            layers=layers,
        ),
        "scheduler_config": dict(
            FlowMatchEulerDiscreteScheduler.load_config(model, subfolder="scheduler")
        ),
        "is_distilled": bool(index.get("is_distilled", False)),
    }


def load_flux2_components(
    model: str, dtype: torch.dtype, single_file_config: str | None = None
) -> dict[str, Any]:
    """Load FLUX.2 klein from a folder, a hub id, or a single transformer ``.safetensors`` file.

    Args:
        model: The reference.
        dtype: Weights' dtype.
        single_file_config: For a single file: the klein folder or hub id that holds the
            configs, the VAE and the text encoder.

    Returns:
        Keyword arguments of :class:`OmostFlux2Pipeline`.

    Raises:
        FileNotFoundError: For a missing single file.
        ValueError: For a single file without ``single_file_config``.
    """
    if not model.endswith(".safetensors"):
        return _components(model, dtype)
    from diffusers import Flux2Transformer2DModel

    transformer, config = single_file_transformer(
        Flux2Transformer2DModel, model, single_file_config, dtype, "FLUX.2", "its VAE and encoder"
    )
    return _components(config, dtype, transformer)


def flux2_from_components(
    components: dict[str, Any],
    device: str,
    dtype: torch.dtype,
    vae_dtype: torch.dtype,
    name: str,
    schedule: RegionalSchedule | None = None,
    text_cache_bytes: int = DEFAULT_TEXT_CACHE_BYTES,
) -> OmostFlux2Pipeline:
    """Move loaded components to ``device`` and build the pipeline named ``name``.

    ``text_cache_bytes`` bounds the pipeline's cache of encoded region texts (0: none).
    """
    encoder: Flux2TextEncoder = components["encoder"]
    place_components(components, [encoder.text_encoder], device, dtype, vae_dtype)
    return OmostFlux2Pipeline(
        **components, model_name=name, schedule=schedule, text_cache_bytes=text_cache_bytes
    )
