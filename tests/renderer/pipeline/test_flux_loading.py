from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from omost_renderer.cli import build_renderer
from omost_renderer.config import Settings
from omost_renderer.pipelines.families import Family, UnknownFamilyError, detect_family
from omost_renderer.pipelines.flow_match import FLUX_DEV_SCHEDULER
from omost_renderer.pipelines.flux.pipeline_flux import OmostFluxPipeline, RegionalSchedule
from omost_renderer.pipelines.flux.tiny import tiny_flux_components
from omost_renderer.pipelines.joint_mask import ImageAttention
from omost_renderer.pipelines.loading import load_renderer
from omost_renderer.pipelines.rendering import RenderParams
from omost_schema import Canvas
from safetensors.torch import save_file

PARAMS = RenderParams(width=64, height=64, steps=2, seed=1)


def test_tiny_names_pick_their_family() -> None:
    assert detect_family("tiny") is Family.SDXL
    assert detect_family("tiny-flux") is Family.FLUX


def test_load_tiny_flux_through_the_settings(dragon_canvas: Canvas) -> None:
    renderer = build_renderer(Settings(model="tiny-flux", device="cpu", dtype="float32"))
    assert isinstance(renderer, OmostFluxPipeline)
    assert renderer.schedule == RegionalSchedule()
    tuned = build_renderer(
        Settings(
            model="tiny-flux",
            device="cpu",
            dtype="float32",
            regional_steps=3,
            regional_blocks=2,
            base_ratio=0.0,
            image_attention="restricted",
        )
    )
    assert isinstance(tuned, OmostFluxPipeline)
    assert tuned.schedule == RegionalSchedule(3, 2, 0.0, ImageAttention.RESTRICTED)
    image = renderer.render(dragon_canvas, PARAMS)[0]
    assert image.metadata["model"] == "tiny-flux"
    assert image.image.size == (64, 64)


def _save_flux_folder(folder: Path) -> None:
    parts = tiny_flux_components()
    encoders = parts["encoders"]
    parts["transformer"].save_pretrained(folder / "transformer")
    parts["vae"].save_pretrained(folder / "vae")
    encoders.tokenizer.save_pretrained(folder / "tokenizer")
    encoders.text_encoder.save_pretrained(folder / "text_encoder")
    encoders.tokenizer_2.save_pretrained(folder / "tokenizer_2")
    encoders.text_encoder_2.save_pretrained(folder / "text_encoder_2")
    FlowMatchEulerDiscreteScheduler.from_config(FLUX_DEV_SCHEDULER).save_config(
        folder / "scheduler"
    )
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))


def test_a_diffusers_folder_is_loaded_as_the_family_its_index_names(
    tmp_path: Path, dragon_canvas: Canvas
) -> None:
    _save_flux_folder(tmp_path)
    assert detect_family(str(tmp_path)) is Family.FLUX
    loaded = load_renderer(str(tmp_path), "cpu", torch.float32)
    assert isinstance(loaded, OmostFluxPipeline)
    expected = load_renderer("tiny-flux", "cpu").render(dragon_canvas, PARAMS)[0].image
    got = loaded.render(dragon_canvas, PARAMS)[0].image
    assert np.array_equal(np.asarray(got), np.asarray(expected))


def test_folders_without_an_index_are_sdxl_and_unknown_classes_are_refused(
    tmp_path: Path,
) -> None:
    assert detect_family(str(tmp_path)) is Family.SDXL
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    with pytest.raises(UnknownFamilyError, match="WanPipeline"):
        detect_family(str(tmp_path))


def test_a_single_file_is_told_by_its_tensor_names(tmp_path: Path) -> None:
    flux, sdxl = tmp_path / "flux.safetensors", tmp_path / "sdxl.safetensors"
    save_file({"double_blocks.0.img_attn.qkv.weight": torch.zeros(1)}, str(flux))
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)}, str(sdxl))
    assert detect_family(str(flux)) is Family.FLUX
    assert detect_family(str(sdxl)) is Family.SDXL
    # With its config named, a single file takes the config's family.
    assert detect_family(str(sdxl), single_file_config="tiny-flux") is Family.FLUX
