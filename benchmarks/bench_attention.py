"""Regional attention at SDXL's 896x1152 shapes: ours vs the naive formula vs plain SDPA.

CPU part (always): one cross-attention call per variant, time (median of repeats) and peak memory
(peak RSS growth of a fresh process running the variant), batch 2 (CFG), head dim 64:
  level 1: 4032 queries (72x56), 10 heads;  level 2: 1008 queries (36x28), 20 heads;
  1771 keys = 23 bags of 77 tokens over 4 regions. Plain SDPA sees the same keys, unmasked.

GPU part (only with CUDA): a full-size SDXL UNet (random weights, real compute), 25 steps at
896x1152 with CFG: ours (batched, regional, fused) vs diffusers' plain SDXL cross-attention
(77 tokens, batched CFG) vs Omost's formulation (separate passes, materialised logits).

Usage: python benchmarks/bench_attention.py [--threads N] [--repeats N] [--gpu-only|--cpu-only]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from omost_renderer.pipelines.regional_attention import (
    masked_scaled_attention,
    naive_regional_attention,
    region_bias,
    region_key_scale,
    regional_attention,
    resize_masks,
)

from benchmarks.peak_rss import peak_mib

KEYS_PER_REGION = (77 * 8, 77 * 5, 77 * 5, 77 * 5)  # 1771 keys
LEVELS = ((72, 56, 10), (36, 28, 20))
HEAD_DIM = 64


def _inputs(
    height: int, width: int, heads: int, device: str, dtype: torch.dtype
) -> tuple[Any, ...]:
    gen = torch.Generator().manual_seed(0)
    grid = torch.zeros(len(KEYS_PER_REGION), 90, 90)
    grid[0] = 1
    grid[1, 0:70, 0:45] = 1
    grid[2, 30:90, 30:90] = 1
    grid[3, 10:50, 40:80] = 1
    masks = resize_masks(grid, height, width).to(device)
    token_region = torch.repeat_interleave(
        torch.arange(len(KEYS_PER_REGION)), torch.tensor(KEYS_PER_REGION)
    ).to(device)
    length = int(token_region.numel())
    q = torch.randn(2, heads, height * width, HEAD_DIM, generator=gen).to(device, dtype)
    k = torch.randn(2, heads, length, HEAD_DIM, generator=gen).to(device, dtype)
    v = torch.randn(2, heads, length, HEAD_DIM, generator=gen).to(device, dtype)
    return q, k, v, token_region, masks


VARIANTS = ("plain", "ours_cached", "ours", "naive")


def _variant(name: str, args: tuple[Any, ...]) -> Any:
    """The call to time. ``ours_cached`` is what the pipeline runs at each step: the key scales and
    mask of a resolution are computed once per render and reused by every later step."""
    q, k, v, tr, m = args
    if name == "plain":
        return lambda: F.scaled_dot_product_attention(q, k, v)
    if name == "naive":
        return lambda: naive_regional_attention(q, k, v, tr, m)
    if name == "ours_cached":
        scale, bias = region_key_scale(m, tr), region_bias(m, tr, q.dtype)
        return lambda: masked_scaled_attention(q, k, v, scale, bias)
    return lambda: regional_attention(q, k, v, tr, m)


def _built_call(name: str, level: int) -> Any:
    return _variant(name, _inputs(*LEVELS[level], "cpu", torch.float32))


def cpu_bench(threads: int, repeats: int) -> list[dict[str, Any]]:
    """Time (best of ``repeats``, variants interleaved to share the machine's noise) and memory."""
    torch.set_num_threads(threads)
    rows = []
    for level in range(len(LEVELS)):
        args = _inputs(*LEVELS[level], "cpu", torch.float32)
        calls = {name: _variant(name, args) for name in VARIANTS}
        best = dict.fromkeys(VARIANTS, float("inf"))
        with torch.inference_mode():
            for _ in range(repeats):
                for name, call in calls.items():
                    start = time.perf_counter()
                    call()
                    best[name] = min(best[name], time.perf_counter() - start)
        for name in VARIANTS:
            rows.append({"variant": name, "level": level, "ms": best[name] * 1e3,
                         "mib": peak_mib(_built_call, (name, level), threads)})  # fmt: skip
    return rows


def sdxl_unet(device: str) -> Any:
    """SDXL base's UNet shapes (2.6B parameters) with random weights, fp16 on ``device``."""
    from diffusers import UNet2DConditionModel

    config = {
        "sample_size": 128, "in_channels": 4, "out_channels": 4,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "block_out_channels": [320, 640, 1280], "layers_per_block": 2,
        "attention_head_dim": [5, 10, 20], "transformer_layers_per_block": [1, 2, 10],
        "cross_attention_dim": 2048, "use_linear_projection": True,
        "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
        "projection_class_embeddings_input_dim": 2816,
    }  # fmt: skip
    unet: Any = UNet2DConditionModel(**config)  # type: ignore[no-untyped-call]
    return unet.to(device, torch.float16).eval()


class _NaiveProcessor:
    """Omost's formulation: logits materialised, one conditioning per call."""

    def __init__(self, token_region: torch.Tensor, masks: torch.Tensor, lat: tuple[int, int]):
        self.token_region, self.masks, self.lat = token_region, masks, lat

    def __call__(self, attn: Any, hidden: torch.Tensor, encoder_hidden_states: Any = None,
                 attention_mask: Any = None, temb: Any = None) -> torch.Tensor:  # fmt: skip
        from omost_renderer.pipelines.sdxl.attention_processor import layer_size

        b, n, _ = hidden.shape
        q = attn.to_q(hidden).view(b, n, attn.heads, -1).transpose(1, 2)
        k = attn.to_k(encoder_hidden_states).view(b, -1, attn.heads, q.shape[-1]).transpose(1, 2)
        v = attn.to_v(encoder_hidden_states).view(b, -1, attn.heads, q.shape[-1]).transpose(1, 2)
        token_region, masks = self.token_region, self.masks
        if k.shape[2] != token_region.numel():
            # The negative pass: Omost runs it as one region covering the whole image.
            token_region = torch.zeros(k.shape[2], dtype=torch.int64, device=q.device)
            masks = torch.ones(1, 90, 90)
        masks = resize_masks(masks, *layer_size(n, *self.lat)).to(q.device, q.dtype)
        out = naive_regional_attention(q, k, v, token_region, masks)
        out = out.transpose(1, 2).reshape(b, n, -1)
        return attn.to_out[1](attn.to_out[0](out))  # type: ignore[no-any-return]


def unet_bench(
    unet: Any, size: tuple[int, int], steps: int, dtype: torch.dtype
) -> dict[str, float]:
    """Seconds for ``steps`` UNet evaluations with CFG: plain, ours, Omost's separate passes.

    Args:
        unet: A diffusers SDXL ``UNet2DConditionModel`` on its device, in ``dtype``.
        size: Image (height, width) in pixels.
        steps: Timed evaluations of each variant (after one warm-up).
        dtype: Dtype of the inputs.

    Returns:
        ``plain_s`` (77 tokens, batched CFG, diffusers' processors), ``ours_s`` (regional,
        batched CFG, fused) and ``omost_separate_naive_s`` (two passes, materialised logits).
    """
    from omost_renderer.pipelines.sdxl.attention_processor import (
        RegionalContext,
        regional_attention_installed,
    )

    device = unet.device
    lat = (size[0] // 8, size[1] // 8)
    width = unet.config.cross_attention_dim
    pooled = (
        unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
    )
    token_region = torch.repeat_interleave(torch.arange(4), torch.tensor(KEYS_PER_REGION))
    length = token_region.numel()
    masks = torch.zeros(4, 90, 90)
    masks[0] = 1
    masks[1, :70, :45] = masks[2, 30:, 30:] = masks[3, 10:50, 40:80] = 1
    x = torch.randn(1, 4, *lat, device=device, dtype=dtype)
    t = torch.tensor([500], device=device)

    def added(batch: int) -> dict[str, torch.Tensor]:
        return {"text_embeds": torch.zeros(batch, pooled, device=device, dtype=dtype),
                "time_ids": torch.zeros(batch, 6, device=device, dtype=dtype)}  # fmt: skip

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def timed(fn: Any) -> float:
        fn()
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        sync()
        return time.perf_counter() - start

    results: dict[str, float] = {}
    with torch.inference_mode():
        text77 = torch.randn(2, 77, width, device=device, dtype=dtype)
        results["plain_s"] = timed(
            lambda: unet(x.repeat(2, 1, 1, 1), t, text77, added_cond_kwargs=added(2))
        )
        text = torch.randn(2, length, width, device=device, dtype=dtype)
        regions = torch.stack([torch.where(token_region < 77, 0, -1), token_region + 1])
        all_masks = torch.cat([torch.ones(1, 90, 90), masks])
        ctx = RegionalContext(regions, all_masks, *lat)
        with regional_attention_installed(unet, ctx):
            results["ours_s"] = timed(
                lambda: unet(x.repeat(2, 1, 1, 1), t, text, added_cond_kwargs=added(2))
            )
        previous = dict(unet.attn_processors)
        naive = _NaiveProcessor(token_region.to(device), masks, lat)
        unet.set_attn_processor(
            {n: (naive if n.endswith("attn2.processor") else p) for n, p in previous.items()}
        )

        def separate() -> None:
            unet(x, t, text[:1], added_cond_kwargs=added(1))
            unet(x, t, text77[:1], added_cond_kwargs=added(1))  # the negative pass

        results["omost_separate_naive_s"] = timed(separate)
        unet.set_attn_processor(dict(previous))
    return results


def gpu_bench(steps: int = 25) -> dict[str, float]:
    """The full-size SDXL UNet in fp16 on CUDA at 896x1152, with the ratios to plain."""
    results = unet_bench(sdxl_unet("cuda"), (1152, 896), steps, torch.float16)
    results["ours_vs_plain"] = results["ours_s"] / results["plain_s"]
    results["omost_vs_ours"] = results["omost_separate_naive_s"] / results["ours_s"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cpu-only", action="store_true")
    parser.add_argument("--gpu-only", action="store_true")
    args = parser.parse_args()
    if not args.gpu_only:
        rows = cpu_bench(args.threads, args.repeats)
        for level in range(len(LEVELS)):
            by = {r["variant"]: r for r in rows if r["level"] == level}
            h, w, heads = LEVELS[level]
            print(f"N={h * w} heads={heads} keys={sum(KEYS_PER_REGION)}")
            for name in VARIANTS:
                r, p = by[name], by["plain"]
                print(f"  {name:11s} {r['ms']:8.1f} ms  x{r['ms'] / p['ms']:.2f}  "
                      f"peak +{r['mib']:7.1f} MiB  x{r['mib'] / p['mib']:.1f}")  # fmt: skip
        print(json.dumps(rows))
    if not args.cpu_only:
        if torch.cuda.is_available():
            print(json.dumps(gpu_bench()))
        else:
            print("no CUDA device: GPU UNet benchmark skipped")


if __name__ == "__main__":
    main()
