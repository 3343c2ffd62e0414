from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
from omost_renderer.cli import build_renderer
from omost_renderer.config import Settings
from omost_renderer.pipelines.loading import load_renderer, vae_dtype
from omost_renderer.pipelines.rendering import RenderParams
from omost_renderer.pipelines.sdxl.tiny import tiny_components
from omost_schema import Canvas
from original_checkpoint import save_original_sdxl_checkpoint


def test_load_tiny_renders_on_cpu(dragon_canvas: Canvas) -> None:
    renderer = load_renderer("tiny", "cpu")
    assert renderer.unet.dtype == torch.float32
    image = renderer.render(dragon_canvas, RenderParams(width=64, height=64, steps=2))[0]
    assert image.image.size == (64, 64)
    assert image.metadata["model"] == "tiny"


def test_load_a_local_diffusers_folder(tmp_path: Path, dragon_canvas: Canvas) -> None:
    parts = tiny_components()
    encoders = parts["encoders"]
    parts["unet"].save_pretrained(tmp_path / "unet")
    parts["vae"].save_pretrained(tmp_path / "vae")
    encoders.tokenizer.save_pretrained(tmp_path / "tokenizer")
    encoders.tokenizer_2.save_pretrained(tmp_path / "tokenizer_2")
    encoders.text_encoder.save_pretrained(tmp_path / "text_encoder")
    encoders.text_encoder_2.save_pretrained(tmp_path / "text_encoder_2")

    loaded = load_renderer(str(tmp_path), "cpu")
    assert loaded.encoders.tokenizer_2.pad_token_id == 0
    assert loaded.encoders.tokenizer.pad_token_id == 49407
    params = RenderParams(width=64, height=64, steps=2, seed=1)
    expected = load_renderer("tiny", "cpu").render(dragon_canvas, params)[0].image
    got = loaded.render(dragon_canvas, params)[0].image
    assert np.array_equal(np.asarray(got), np.asarray(expected))

    # The worker's way in: settings name the folder, the device and the dtype as text.
    settings = Settings(model=str(tmp_path), device="cpu", dtype="float32")
    from_settings = build_renderer(settings).render(dragon_canvas, params)[0].image
    assert np.array_equal(np.asarray(from_settings), np.asarray(expected))


def test_vae_upcasts_only_float16_without_an_fp16_fixed_vae() -> None:
    assert vae_dtype(torch.float16, force_upcast=True) == torch.float32
    assert vae_dtype(torch.float16, force_upcast=False) == torch.float16
    # bfloat16 has float32's range: no upcast, whatever the config says (Omost runs bf16).
    assert vae_dtype(torch.bfloat16, force_upcast=True) == torch.bfloat16
    assert vae_dtype(torch.bfloat16, force_upcast=False) == torch.bfloat16
    assert vae_dtype(torch.float32, force_upcast=True) == torch.float32
    assert vae_dtype(torch.float32, force_upcast=False) == torch.float32


def test_loaded_vae_follows_the_dtype_rule() -> None:
    assert tiny_components()["vae"].config.force_upcast
    renderer = load_renderer("tiny", "cpu", torch.bfloat16)
    assert renderer.vae.dtype == torch.bfloat16
    assert renderer.unet.dtype == torch.bfloat16
    assert load_renderer("tiny", "cpu", torch.float16).vae.dtype == torch.float32


def _write_single_file_model(folder: Path) -> tuple[Path, Path, dict[str, Any]]:
    """A tiny SDXL as an original-layout checkpoint, and a diffusers folder with only configs."""
    parts = tiny_components()
    encoders = parts["encoders"]
    checkpoint = folder / "tiny-sdxl.safetensors"
    save_original_sdxl_checkpoint(
        checkpoint,
        unet=parts["unet"],
        vae=parts["vae"],
        text_encoder=encoders.text_encoder,
        text_encoder_2=encoders.text_encoder_2,
        layers_per_block=parts["unet"].config.layers_per_block,
        vae_blocks=len(parts["vae"].config.block_out_channels),
    )
    configs = folder / "configs"
    StableDiffusionXLPipeline(
        vae=parts["vae"],
        text_encoder=encoders.text_encoder,
        text_encoder_2=encoders.text_encoder_2,
        tokenizer=encoders.tokenizer,
        tokenizer_2=encoders.tokenizer_2,
        unet=parts["unet"],
        scheduler=EulerDiscreteScheduler(),
    ).save_pretrained(configs)
    # Only configs and tokenizers may come from the folder: the weights must be the file's.
    for weights in configs.rglob("*.safetensors"):
        weights.unlink()
    return checkpoint, configs, parts


def test_load_a_single_file_checkpoint(tmp_path: Path, dragon_canvas: Canvas) -> None:
    checkpoint, configs, parts = _write_single_file_model(tmp_path)

    loaded = load_renderer(str(checkpoint), "cpu", single_file_config=str(configs))

    encoders = parts["encoders"]
    pairs = {
        "unet": (loaded.unet, parts["unet"]),
        "vae": (loaded.vae, parts["vae"]),
        "text_encoder": (loaded.encoders.text_encoder, encoders.text_encoder),
        "text_encoder_2": (loaded.encoders.text_encoder_2, encoders.text_encoder_2),
    }
    for name, (got_model, want_model) in pairs.items():
        got, want = got_model.state_dict(), want_model.state_dict()
        assert got.keys() == want.keys(), name
        for key, tensor in want.items():
            assert torch.equal(got[key], tensor), f"{name}: {key}"
    assert loaded.encoders.tokenizer_2.pad_token_id == 0

    params = RenderParams(width=64, height=64, steps=2, seed=3)
    expected = load_renderer("tiny", "cpu").render(dragon_canvas, params)[0].image
    got = loaded.render(dragon_canvas, params)[0].image
    assert np.array_equal(np.asarray(got), np.asarray(expected))

    # The worker's way in: the settings name the file and the folder of its configs.
    settings = Settings(
        model=str(checkpoint), single_file_config=str(configs), device="cpu", dtype="float32"
    )
    from_settings = build_renderer(settings).render(dragon_canvas, params)[0].image
    assert np.array_equal(np.asarray(from_settings), np.asarray(expected))


def test_a_missing_single_file_checkpoint_is_named_in_the_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.safetensors"
    with pytest.raises(FileNotFoundError, match=r"nowhere\.safetensors"):
        load_renderer(str(missing), "cpu", single_file_config=str(tmp_path))
