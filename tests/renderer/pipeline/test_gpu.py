from __future__ import annotations

import numpy as np
import pytest
import torch
from omost_renderer.pipelines.loading import load_renderer
from omost_renderer.pipelines.rendering import RenderParams
from omost_schema import Canvas

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_seed_gives_the_same_picture_on_gpu_as_on_cpu(dragon_canvas: Canvas) -> None:
    params = RenderParams(width=64, height=64, steps=4, seed=9)
    cpu = load_renderer("tiny", "cpu").render(dragon_canvas, params)[0].image
    gpu = load_renderer("tiny", "cuda", torch.float32).render(dragon_canvas, params)[0].image
    diff = np.abs(np.asarray(cpu, dtype=np.int16) - np.asarray(gpu, dtype=np.int16))
    assert diff.mean() < 2.0


def test_fp16_render_on_gpu(dragon_canvas: Canvas) -> None:
    renderer = load_renderer("tiny", "cuda")
    assert renderer.unet.dtype == torch.float16
    assert renderer.vae.dtype == torch.float32
    image = renderer.render(dragon_canvas, RenderParams(width=128, height=128, steps=4))[0]
    assert image.image.size == (128, 128)


def test_bfloat16_render_on_gpu_keeps_a_bfloat16_vae(dragon_canvas: Canvas) -> None:
    renderer = load_renderer("tiny", "cuda", torch.bfloat16)
    assert renderer.vae.dtype == torch.bfloat16
    params = RenderParams(width=128, height=128, steps=4, hires_scale=1.5, hires_steps=2)
    image = renderer.render(dragon_canvas, params)[0]
    assert image.image.size == (192, 192)
