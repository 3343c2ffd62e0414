"""Build a renderer from a model reference.

The reference is a hub id, a local folder in diffusers layout, a single ``.safetensors``
checkpoint, or a tiny name (``tiny``, ``tiny-flux``, ``tiny-flux2``: random components for CPU
development). Its family (SDXL, FLUX.1 or FLUX.2 klein) is detected from the model
(``pipelines.families``).

UNet and text encoders run in the requested dtype (fp16 on CUDA by default). The VAE runs in the
same dtype, except that SDXL's stock VAE overflows in float16: a float16 request runs it in
float32 unless its config says float16 is safe (``force_upcast: false``, as in fp16-fixed VAEs).
bfloat16 has float32's range and needs no upcast (Omost itself runs a bfloat16 VAE).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from omost_renderer.pipelines.families import Family, detect_family
from omost_renderer.pipelines.flux.pipeline_flux import OmostFluxPipeline
from omost_renderer.pipelines.flux2.pipeline_flux2 import OmostFlux2Pipeline
from omost_renderer.pipelines.regional_schedule import RegionalSchedule
from omost_renderer.pipelines.sdxl.encoding import TextEncoders
from omost_renderer.pipelines.sdxl.pipeline_sdxl import OmostSDXLPipeline
from omost_renderer.pipelines.speed_options import SpeedOptions, apply_speed_options
from omost_renderer.pipelines.text_cache import DEFAULT_TEXT_CACHE_BYTES

TINY = "tiny"
TINY_FLUX = "tiny-flux"
TINY_FLUX2 = "tiny-flux2"


def default_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str) -> torch.dtype:
    """fp16 on GPUs, float32 on CPU (where half precision is slow and imprecise)."""
    return torch.float16 if device.startswith("cuda") else torch.float32


def vae_dtype(dtype: torch.dtype, *, force_upcast: bool) -> torch.dtype:
    """The VAE's dtype for pipeline weights in ``dtype``.

    Only float16 overflows in SDXL's stock VAE (its activations exceed 65504); bfloat16 and
    float32 have the range. diffusers' ``force_upcast`` config flag is true for the stock VAE and
    false for fp16-fixed ones, and here it only matters for float16.

    Args:
        dtype: The requested pipeline dtype.
        force_upcast: The VAE config's ``force_upcast`` (true when absent).

    Returns:
        float32 for float16 without an fp16-fixed VAE, else ``dtype``.
    """
    if dtype == torch.float16 and force_upcast:
        return torch.float32
    return dtype


def _from_components(
    components: dict[str, Any],
    device: str,
    dtype: torch.dtype,
    name: str,
    text_cache_bytes: int = DEFAULT_TEXT_CACHE_BYTES,
) -> OmostSDXLPipeline:
    unet, vae = components["unet"], components["vae"]
    unet.to(device=device, dtype=dtype).eval()
    upcast = bool(getattr(vae.config, "force_upcast", True))
    vae.to(device=device, dtype=vae_dtype(dtype, force_upcast=upcast)).eval()
    for key in ("text_encoder", "text_encoder_2"):
        components[key].to(device=device, dtype=dtype).eval()
    encoders = TextEncoders(
        tokenizer=components["tokenizer"],
        tokenizer_2=components["tokenizer_2"],
        text_encoder=components["text_encoder"],
        text_encoder_2=components["text_encoder_2"],
    )
    return OmostSDXLPipeline(
        unet, vae, encoders, model_name=name, text_cache_bytes=text_cache_bytes
    )


def _load_pretrained(model: str, dtype: torch.dtype) -> dict[str, Any]:
    """Load each SDXL component from a hub id or a local folder in diffusers layout."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    return {
        "unet": UNet2DConditionModel.from_pretrained(  # type: ignore[no-untyped-call]
            model, subfolder="unet", torch_dtype=dtype
        ),
        "vae": AutoencoderKL.from_pretrained(model, subfolder="vae"),  # type: ignore[no-untyped-call]
        "tokenizer": CLIPTokenizer.from_pretrained(model, subfolder="tokenizer"),
        "tokenizer_2": CLIPTokenizer.from_pretrained(model, subfolder="tokenizer_2"),
        "text_encoder": CLIPTextModel.from_pretrained(
            model, subfolder="text_encoder", torch_dtype=dtype
        ),
        "text_encoder_2": CLIPTextModelWithProjection.from_pretrained(
            model, subfolder="text_encoder_2", torch_dtype=dtype
        ),
    }


def _load_single_file(path: Path, dtype: torch.dtype, config: str | None) -> dict[str, Any]:
    """Load an SDXL checkpoint saved as one ``.safetensors`` file (A1111/ComfyUI layout).

    The file holds weights only. Component configs and tokenizers come from ``config`` (a hub id
    or a local folder in diffusers layout; its weights are not read) or, when it is unset, from the
    hub repository diffusers infers from the checkpoint's keys (SDXL base for SDXL checkpoints).
    """
    from diffusers import StableDiffusionXLPipeline

    if not path.is_file():
        raise FileNotFoundError(f"single-file checkpoint {path} does not exist")
    options: dict[str, Any] = {"torch_dtype": dtype}
    if config is not None:
        options["config"] = config
    pipe = StableDiffusionXLPipeline.from_single_file(str(path), **options)
    return {
        key: getattr(pipe, key)
        for key in ("unet", "vae", "tokenizer", "tokenizer_2", "text_encoder", "text_encoder_2")
    }


def _components_vae_dtype(components: dict[str, Any], dtype: torch.dtype) -> torch.dtype:
    """The VAE dtype of loaded FLUX.1 or FLUX.2 components (:func:`vae_dtype` of their VAE)."""
    return vae_dtype(
        dtype, force_upcast=bool(getattr(components["vae"].config, "force_upcast", True))
    )


def _load_flux(
    model: str,
    device: str,
    dtype: torch.dtype,
    single_file_config: str | None,
    schedule: RegionalSchedule | None,
    text_cache_bytes: int = DEFAULT_TEXT_CACHE_BYTES,
) -> OmostFluxPipeline:
    from omost_renderer.pipelines.flux.loading import flux_from_components, load_flux_components

    if model == TINY_FLUX:
        from omost_renderer.pipelines.flux.tiny import tiny_flux_components

        components = tiny_flux_components()
    else:
        components = load_flux_components(model, dtype, single_file_config)
    vae = _components_vae_dtype(components, dtype)
    return flux_from_components(
        components, device, dtype, vae, model, schedule, text_cache_bytes=text_cache_bytes
    )


def _load_flux2(
    model: str,
    device: str,
    dtype: torch.dtype,
    single_file_config: str | None,
    schedule: RegionalSchedule | None,
    text_cache_bytes: int = DEFAULT_TEXT_CACHE_BYTES,
) -> OmostFlux2Pipeline:
    from omost_renderer.pipelines.flux2.loading import flux2_from_components, load_flux2_components

    if model == TINY_FLUX2:
        from omost_renderer.pipelines.flux2.tiny import tiny_flux2_components

        components = tiny_flux2_components()
    else:
        components = load_flux2_components(model, dtype, single_file_config)
    vae = _components_vae_dtype(components, dtype)
    return flux2_from_components(
        components, device, dtype, vae, model, schedule, text_cache_bytes=text_cache_bytes
    )


def load_renderer(
    model: str,
    device: str | None = None,
    dtype: torch.dtype | None = None,
    *,
    single_file_config: str | None = None,
    schedule: RegionalSchedule | None = None,
    speed: SpeedOptions | None = None,
    text_cache_bytes: int = DEFAULT_TEXT_CACHE_BYTES,
) -> OmostSDXLPipeline | OmostFluxPipeline | OmostFlux2Pipeline:
    """Load the Omost renderer of the model's family (SDXL, FLUX.1 or FLUX.2 klein).

    Args:
        model: ``tiny``, ``tiny-flux``, ``tiny-flux2``, a ``.safetensors`` file, a local folder
            in diffusers layout, or a hub id (e.g. ``SG161222/RealVisXL_V4.0``,
            ``black-forest-labs/FLUX.1-schnell``, ``black-forest-labs/FLUX.2-klein-4B``).
        device: ``cuda``, ``cuda:1``, ``cpu``...; default ``cuda`` when available.
        dtype: UNet and text encoder precision; default fp16 on CUDA, float32 on CPU.
        single_file_config: For a ``.safetensors`` file: a hub id or local diffusers folder whose
            configs and tokenizers describe it (needed offline); default inferred from the file.
        schedule: Where a FLUX model's regional mask applies (default: ``RegionalSchedule()``).
        speed: Compile, channels-last and fused QKV for the denoiser (default: none), applied
            once the model is on its device.
        text_cache_bytes: Bound of the pipelines' cache of encoded region texts
            (``text_cache``), default 256 MiB; 0 turns it off.

    Returns:
        A ``CanvasRenderer``.

    Raises:
        SpeedOptionError: For a speed option the model's family cannot take.
    """
    device = device or default_device()
    dtype = dtype or default_dtype(device)
    speed = speed or SpeedOptions()
    family = detect_family(model, single_file_config)
    if family is Family.FLUX2:
        flux2 = _load_flux2(model, device, dtype, single_file_config, schedule, text_cache_bytes)
        apply_speed_options(flux2.transformer, Family.FLUX2, speed)
        return flux2
    if family is Family.FLUX:
        flux = _load_flux(model, device, dtype, single_file_config, schedule, text_cache_bytes)
        apply_speed_options(flux.transformer, Family.FLUX, speed)
        return flux
    if model == TINY:
        from omost_renderer.pipelines.sdxl.tiny import tiny_components

        tiny = tiny_components()
        encoders: TextEncoders = tiny["encoders"]
        components = {
            "unet": tiny["unet"],
            "vae": tiny["vae"],
            "tokenizer": encoders.tokenizer,
            "tokenizer_2": encoders.tokenizer_2,
            "text_encoder": encoders.text_encoder,
            "text_encoder_2": encoders.text_encoder_2,
        }
    elif model.endswith(".safetensors"):
        components = _load_single_file(Path(model), dtype, single_file_config)
    else:
        components = _load_pretrained(model, dtype)
    sdxl = _from_components(components, device, dtype, model, text_cache_bytes)
    apply_speed_options(sdxl.unet, Family.SDXL, speed)
    return sdxl
