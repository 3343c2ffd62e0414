"""The GPU FLUX benchmark's code path, run on a tiny transformer so that it stays runnable."""

from __future__ import annotations

import math

from benchmarks.bench_flux_attention import gpu_bench

TINY = {
    "in_channels": 16,
    "num_layers": 1,
    "num_single_layers": 1,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "joint_attention_dim": 32,
    "pooled_projection_dim": 32,
    "guidance_embeds": True,
    "axes_dims_rope": (4, 6, 6),
}


def test_flux_transformer_benchmark_times_plain_and_regional() -> None:
    results = gpu_bench(1, TINY)
    assert set(results) == {"plain_s", "regional_s", "ratio"}
    assert all(math.isfinite(v) and v > 0 for v in results.values())
