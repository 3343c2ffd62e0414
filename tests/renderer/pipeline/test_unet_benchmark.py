"""The GPU UNet benchmark's code paths, run on the tiny UNet so that they stay runnable."""

from __future__ import annotations

import math

import torch
from diffusers.models.attention_processor import AttnProcessor2_0
from omost_renderer.pipelines.sdxl.tiny import tiny_unet

from benchmarks.bench_attention import unet_bench


def test_unet_benchmark_times_every_variant_and_restores_the_processors() -> None:
    unet = tiny_unet().eval()
    results = unet_bench(unet, (64, 64), steps=1, dtype=torch.float32)
    assert set(results) == {"plain_s", "ours_s", "omost_separate_naive_s"}
    assert all(math.isfinite(v) and v > 0 for v in results.values())
    assert all(isinstance(p, AttnProcessor2_0) for p in unet.attn_processors.values())
