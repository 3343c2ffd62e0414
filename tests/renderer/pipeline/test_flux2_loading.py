"""Loading FLUX.2 klein: family detection, a diffusers folder, the tiny name, single files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import pytest
import torch
from omost_renderer.cli import build_renderer
from omost_renderer.config import Settings
from omost_renderer.pipelines.families import Family, detect_family
from omost_renderer.pipelines.flux2.loading import load_flux2_components
from omost_renderer.pipelines.flux2.pipeline_flux2 import OmostFlux2Pipeline
from omost_renderer.pipelines.flux2.sampling import FLUX2_SCHEDULER
from omost_renderer.pipelines.flux2.tiny import build_tiny_flux2, tiny_flux2_components
from omost_renderer.pipelines.loading import load_renderer
from omost_renderer.pipelines.rendering import RenderParams
from omost_schema import Canvas
from safetensors.torch import save_file

#: diffusers' own classes, untyped (the stock pipeline as a reference).
DIFFUSERS: Any = diffusers

PARAMS = RenderParams(width=64, height=64, steps=2, seed=1)


def _save_klein_folder(folder: Path, *, distilled: bool = True) -> None:
    parts = tiny_flux2_components()
    DIFFUSERS.Flux2KleinPipeline(
        scheduler=DIFFUSERS.FlowMatchEulerDiscreteScheduler.from_config(FLUX2_SCHEDULER),
        vae=parts["vae"],
        text_encoder=parts["encoder"].text_encoder,
        tokenizer=parts["encoder"].tokenizer,
        transformer=parts["transformer"],
        is_distilled=distilled,
    ).save_pretrained(folder)


def test_the_tiny_name_and_klein_folders_are_flux2(tmp_path: Path) -> None:
    assert detect_family("tiny-flux2") is Family.FLUX2
    _save_klein_folder(tmp_path)
    assert json.loads((tmp_path / "model_index.json").read_text())["is_distilled"] is True
    assert detect_family(str(tmp_path)) is Family.FLUX2


def test_a_klein_folder_renders_as_the_tiny_pipeline(tmp_path: Path, dragon_canvas: Canvas) -> None:
    _save_klein_folder(tmp_path)
    loaded = load_renderer(str(tmp_path), "cpu", torch.float32)
    assert isinstance(loaded, OmostFlux2Pipeline)
    assert loaded.is_distilled
    assert loaded.encoder.layers == (1, 2, 3)
    expected = build_tiny_flux2().render(dragon_canvas, PARAMS)[0].image
    image = loaded.render(dragon_canvas, PARAMS)[0].image
    assert np.array_equal(np.asarray(image), np.asarray(expected))


def test_klein_base_folders_take_guidance(tmp_path: Path) -> None:
    _save_klein_folder(tmp_path, distilled=False)
    loaded = load_renderer(str(tmp_path), "cpu", torch.float32)
    assert isinstance(loaded, OmostFlux2Pipeline)
    assert loaded.family_params.cfg == "cfg"


def test_load_tiny_flux2_through_the_settings(dragon_canvas: Canvas) -> None:
    renderer = build_renderer(Settings(model="tiny-flux2", device="cpu", dtype="float32"))
    assert isinstance(renderer, OmostFlux2Pipeline)
    image = renderer.render(dragon_canvas, PARAMS)[0]
    assert image.metadata["model"] == "tiny-flux2"
    assert image.image.size == (64, 64)


def test_a_single_transformer_file_is_told_from_flux1_by_its_modulation_keys(
    tmp_path: Path,
) -> None:
    flux2 = tmp_path / "klein.safetensors"
    save_file(
        {
            "double_blocks.0.img_attn.qkv.weight": torch.zeros(2, 2),
            "single_stream_modulation.lin.weight": torch.zeros(2, 2),
        },
        str(flux2),
    )
    assert detect_family(str(flux2)) is Family.FLUX2
    flux1 = tmp_path / "flux1.safetensors"
    save_file({"double_blocks.0.img_attn.qkv.weight": torch.zeros(2, 2)}, str(flux1))
    assert detect_family(str(flux1)) is Family.FLUX


def test_a_single_file_needs_its_config_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_flux2_components(str(tmp_path / "missing.safetensors"), torch.float32, "x")
    present = tmp_path / "klein.safetensors"
    save_file({"single_stream_modulation.lin.weight": torch.zeros(2, 2)}, str(present))
    with pytest.raises(ValueError, match="single_file_config"):
        load_flux2_components(str(present), torch.float32)
