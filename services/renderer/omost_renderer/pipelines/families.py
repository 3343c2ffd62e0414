"""Which family of pipeline a model reference names: ``sdxl``, ``flux`` (FLUX.1) or ``flux2``.

A reference is a tiny name (``tiny`` is SDXL, ``tiny-flux`` FLUX.1, ``tiny-flux2`` FLUX.2
klein), a local folder or hub id in
diffusers layout (its ``model_index.json`` names the pipeline class; a folder without one is an
SDXL component folder, as the renderer has always loaded), or a single ``.safetensors`` file
(the family of its ``single_file_config`` when one is given, else told from the checkpoint's
tensor names: FLUX.2's have ``single_stream_modulation.``, FLUX.1's ``double_blocks.`` or
``single_transformer_blocks.`` without it).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any


class Family(StrEnum):
    """The pipeline families the renderer has."""

    SDXL = "sdxl"
    FLUX = "flux"
    FLUX2 = "flux2"


#: The random-weight CPU pipelines, by served name.
TINY_MODELS: dict[str, Family] = {
    "tiny": Family.SDXL,
    "tiny-flux": Family.FLUX,
    "tiny-flux2": Family.FLUX2,
}
#: diffusers pipeline classes (``model_index.json``'s ``_class_name``) of each family.
PIPELINE_CLASSES: dict[str, Family] = {
    "StableDiffusionXLPipeline": Family.SDXL,
    "StableDiffusionXLImg2ImgPipeline": Family.SDXL,
    "FluxPipeline": Family.FLUX,
    "FluxImg2ImgPipeline": Family.FLUX,
    # FLUX.2 klein (Qwen3 text encoder); FLUX.2 dev (Flux2Pipeline, Mistral) is not supported.
    "Flux2KleinPipeline": Family.FLUX2,
}
_FLUX_KEYS = ("double_blocks.", "single_transformer_blocks.", "transformer_blocks.0.attn.add_")
#: FLUX.2's shared modulations (BFL's and diffusers' names); FLUX.1 has per-block ones.
_FLUX2_KEYS = ("single_stream_modulation.",)


class UnknownFamilyError(ValueError):
    """The model's pipeline class belongs to no family the renderer has."""


def family_of_index(index: dict[str, Any]) -> Family:
    """The family a ``model_index.json`` names.

    Raises:
        UnknownFamilyError: For a pipeline class no family has.
    """
    name = str(index.get("_class_name", ""))
    try:
        return PIPELINE_CLASSES[name]
    except KeyError:
        known = ", ".join(sorted(PIPELINE_CLASSES))
        raise UnknownFamilyError(f"pipeline class {name!r} is not one of: {known}") from None


def _hub_index(model: str) -> dict[str, Any] | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        path = hf_hub_download(model, "model_index.json")
    except EntryNotFoundError:
        return None
    return json.loads(Path(path).read_text())  # type: ignore[no-any-return]


def _checkpoint_family(path: Path) -> Family:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as checkpoint:
        keys = list(checkpoint.keys())
    if any(key.startswith(prefix) or f".{prefix}" in key for key in keys for prefix in _FLUX2_KEYS):
        return Family.FLUX2
    if any(key.startswith(prefix) or f".{prefix}" in key for key in keys for prefix in _FLUX_KEYS):
        return Family.FLUX
    return Family.SDXL


def detect_family(model: str, single_file_config: str | None = None) -> Family:
    """The family of the pipeline ``model`` refers to.

    Args:
        model: A tiny name, a ``.safetensors`` file, a local folder or a hub id.
        single_file_config: For a ``.safetensors`` file: the folder or hub id of its configs.

    Returns:
        The family.

    Raises:
        UnknownFamilyError: For a pipeline class no family has.
    """
    if model in TINY_MODELS:
        return TINY_MODELS[model]
    if model.endswith(".safetensors"):
        if single_file_config is not None:
            return detect_family(single_file_config)
        return _checkpoint_family(Path(model))
    folder = Path(model)
    if folder.is_dir():
        index_file = folder / "model_index.json"
        if not index_file.is_file():
            return Family.SDXL
        return family_of_index(json.loads(index_file.read_text()))
    index = _hub_index(model)
    return Family.SDXL if index is None else family_of_index(index)
