"""The FLUX.1 and FLUX.2 loaders' shared steps: a single transformer file, components placed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from omost_renderer.pipelines.component_loading import place_components, single_file_transformer


class _Transformer:
    """Stands for a diffusers transformer class; records how ``from_single_file`` was called."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def from_single_file(self, path: str, **options: Any) -> str:
        self.calls.append((path, options))
        return "transformer"


def test_a_single_file_needs_the_file_and_a_config(tmp_path: Path) -> None:
    transformer = _Transformer()
    missing = str(tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        single_file_transformer(transformer, missing, "cfg", torch.float32, "FLUX", "its VAE")
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"a single FLUX\.2 file needs single_file_config \(x\)"):
        single_file_transformer(transformer, str(path), None, torch.float32, "FLUX.2", "x")
    loaded = single_file_transformer(transformer, str(path), "cfg", torch.bfloat16, "FLUX", "x")
    assert loaded == ("transformer", "cfg")
    assert transformer.calls[-1] == (
        str(path),
        {"config": "cfg", "subfolder": "transformer", "torch_dtype": torch.bfloat16},
    )


def test_placed_components_take_their_dtypes_in_eval_mode() -> None:
    components = {"transformer": torch.nn.Linear(2, 2), "vae": torch.nn.Linear(2, 2)}
    encoder = torch.nn.Linear(2, 2)
    place_components(components, [encoder], "cpu", torch.bfloat16, torch.float32)
    assert components["transformer"].weight.dtype == torch.bfloat16
    assert encoder.weight.dtype == torch.bfloat16
    assert components["vae"].weight.dtype == torch.float32
    assert not any(m.training for m in (components["transformer"], components["vae"], encoder))
