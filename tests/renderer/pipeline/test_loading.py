from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from omost_renderer.cli import build_renderer
from omost_renderer.config import Settings
from omost_renderer.loading import _vae_dtype, load_renderer
from omost_renderer.rendering import RenderParams
from omost_renderer.tiny import tiny_components
from omost_schema import Canvas


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


def test_vae_stays_float32_when_half_precision_would_overflow() -> None:
    vae = tiny_components()["vae"]
    assert vae.config.force_upcast
    assert _vae_dtype(vae, torch.float16) == torch.float32
    assert _vae_dtype(vae, torch.float32) == torch.float32
