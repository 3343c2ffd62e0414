"""Regional joint attention for FLUX.1 at 1024x1024 shapes: ours vs plain joint attention.

CPU part (always): one joint attention call of a FLUX block, after the projections, per variant:
4096 image tokens (64x64 packed latent) plus 768 text tokens of 5 regions (global 256, four
local 128 each), 24 heads of 128 (FLUX.1's), batch 1, float32. Time is the best of the repeats
(variants interleaved so they share the machine's noise); memory is the peak RSS growth of a
fresh process running one call (inputs and the prepared mask excluded).
  plain:          SDPA over the joint sequence, no mask (what diffusers' FluxAttnProcessor runs);
  regional:       SDPA with the regional additive mask (``base_ratio`` 0);
  regional_base:  the mask plus the unmasked pass blended into the image tokens (``base_ratio``
                  > 0: two attention calls);
  mask_build:     ``joint_bias`` itself, built once per render and pass (not per step).

GPU part (only with CUDA): a full-size FLUX.1 transformer with random weights (bfloat16) at
1024x1024, regional (base_ratio 0, every block, every step) vs plain, for 4 and 28 steps.

Usage: python -m benchmarks.bench_flux_attention [--threads N] [--repeats N] [--heads N]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from omost_renderer.pipelines.joint_mask import joint_bias

from benchmarks.peak_rss import peak_mib

ROWS = COLS = 64
TEXT_PER_REGION = (256, 128, 128, 128, 128)
HEAD_DIM = 128
VARIANTS = ("plain", "regional", "regional_base", "mask_build")


def _regions() -> tuple[torch.Tensor, torch.Tensor]:
    masks = torch.zeros(len(TEXT_PER_REGION), 90, 90)
    masks[0] = 1
    masks[1, :45, :45] = 1
    masks[2, :45, 45:] = 1
    masks[3, 45:, :60] = 1
    masks[4, 30:90, 40:90] = 1
    token_region = torch.repeat_interleave(
        torch.arange(len(TEXT_PER_REGION)), torch.tensor(TEXT_PER_REGION)
    )
    return token_region, masks


def _inputs(heads: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    length = sum(TEXT_PER_REGION) + ROWS * COLS
    q, k, v = (torch.randn(1, heads, length, HEAD_DIM, generator=gen) for _ in range(3))
    token_region, masks = _regions()
    bias = joint_bias(token_region, masks, ROWS, COLS)
    assert bias is not None
    return q, k, v, bias


def _variant(name: str, args: tuple[torch.Tensor, ...]) -> Any:
    q, k, v, bias = args
    text = sum(TEXT_PER_REGION)
    if name == "plain":
        return lambda: F.scaled_dot_product_attention(q, k, v)
    if name == "regional":
        return lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=bias)

    def with_base() -> torch.Tensor:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        base = F.scaled_dot_product_attention(q, k, v)
        image = out[:, :, text:] * 0.8 + base[:, :, text:] * 0.2
        return torch.cat([out[:, :, :text], image], dim=2)

    if name == "regional_base":
        return with_base
    token_region, masks = _regions()
    return lambda: joint_bias(token_region, masks, ROWS, COLS)


def _built_call(name: str, heads: int) -> Any:
    return _variant(name, _inputs(heads))


def cpu_bench(threads: int, repeats: int, heads: int) -> list[dict[str, Any]]:
    """Best time of ``repeats`` and peak memory of each variant, with ratios to ``plain``."""
    torch.set_num_threads(threads)
    args = _inputs(heads)
    calls = {name: _variant(name, args) for name in VARIANTS}
    best = dict.fromkeys(VARIANTS, float("inf"))
    with torch.inference_mode():
        for _ in range(repeats):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                best[name] = min(best[name], time.perf_counter() - start)
    peaks = {name: peak_mib(_built_call, (name, heads), threads) for name in VARIANTS}
    return [
        {
            "variant": name,
            "ms": round(best[name] * 1e3, 1),
            "time_vs_plain": round(best[name] / best["plain"], 3),
            "peak_mib": round(peaks[name], 1),
            "memory_vs_plain": round(peaks[name] / max(peaks["plain"], 1e-9), 3),
        }
        for name in VARIANTS
    ]


def area_effect(heads: int = 2) -> list[dict[str, Any]]:
    """Attention mass image tokens put on their own region's text, with and without the area bias.

    For each local region: the mean share of softmax mass that the image queries inside its box
    give to the region's text keys (random queries and keys, so the share reflects the mask and
    the bias, not learnt content).
    """
    from omost_renderer.pipelines.joint_mask import image_token_masks

    gen = torch.Generator().manual_seed(0)
    token_region, masks = _regions()
    text = int(token_region.numel())
    length = text + ROWS * COLS
    q, k = (torch.randn(1, heads, length, HEAD_DIM, generator=gen) for _ in range(2))
    inside = image_token_masks(masks, ROWS, COLS)
    rows = []
    for area_scale in (False, True):
        bias = joint_bias(token_region, masks, ROWS, COLS, area_scale=area_scale)
        assert bias is not None
        logits = q @ k.transpose(-1, -2) / HEAD_DIM**0.5 + bias
        probs = logits[:, :, text:].softmax(dim=-1)  # image queries only
        for region in range(1, len(TEXT_PER_REGION)):
            own = torch.cat([token_region == region, torch.zeros(ROWS * COLS, dtype=torch.bool)])
            share = probs[:, :, inside[region]][..., own].sum(-1).mean()
            area = float(inside[region].float().mean())
            rows.append(
                {
                    "region": region,
                    "area": round(area, 3),
                    "area_scale": area_scale,
                    "own_text_share": round(float(share), 3),
                }
            )
    return rows


def gpu_bench(steps: int, config: dict[str, Any] | None = None) -> dict[str, float]:
    """Seconds for ``steps`` transformer calls at 1024x1024: plain vs regional (base_ratio 0).

    Args:
        steps: Timed calls per variant (after one warm-up call each).
        config: ``FluxTransformer2DModel`` config; FLUX.1's full size when ``None``.

    Returns:
        ``plain_s``, ``regional_s`` and their ratio.
    """
    from diffusers import FluxTransformer2DModel
    from omost_renderer.pipelines.flux.attention_processor import (
        RegionalMask,
        install_regional_processors,
    )
    from omost_renderer.pipelines.packed_latents import image_ids

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = FluxTransformer2DModel(**(config or {"guidance_embeds": True}))
    model = model.to(device, dtype).eval()  # random weights: nothing to keep in float32
    install_regional_processors(model)
    token_region, masks = _regions()
    text = int(token_region.numel())
    rows = cols = ROWS if config is None else 4
    bias = joint_bias(token_region, masks, rows, cols, dtype=dtype)
    assert bias is not None
    regional = RegionalMask(bias.to(device), text)
    width = model.config.in_channels
    inputs = {
        "hidden_states": torch.randn(1, rows * cols, width, device=device, dtype=dtype),
        "encoder_hidden_states": torch.randn(
            1, text, model.config.joint_attention_dim, device=device, dtype=dtype
        ),
        "pooled_projections": torch.randn(
            1, model.config.pooled_projection_dim, device=device, dtype=dtype
        ),
        "timestep": torch.full((1,), 0.5, device=device, dtype=dtype),
        "img_ids": image_ids(rows, cols).to(device, dtype),
        "txt_ids": torch.zeros(text, 3, device=device, dtype=dtype),
        "guidance": torch.full((1,), 3.5, device=device) if model.config.guidance_embeds else None,
        "return_dict": False,
    }
    seconds = {}
    with torch.inference_mode():
        for name, mask in (("plain", None), ("regional", regional)):
            kwargs = {"regional_mask": mask}
            model(**inputs, joint_attention_kwargs=kwargs)
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(steps):
                model(**inputs, joint_attention_kwargs=kwargs)
            if device == "cuda":
                torch.cuda.synchronize()
            seconds[f"{name}_s"] = time.perf_counter() - start
    seconds["ratio"] = seconds["regional_s"] / seconds["plain_s"]
    return seconds


def main() -> None:
    """Print the CPU rows, and the GPU rows when CUDA is present."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--heads", type=int, default=24)
    args = parser.parse_args()
    for row in cpu_bench(args.threads, args.repeats, args.heads):
        print(json.dumps({"bench": "flux_attention_cpu", "heads": args.heads, **row}))
    for row in area_effect():
        print(json.dumps({"bench": "flux_area_scale", **row}))
    if torch.cuda.is_available():
        for steps in (4, 28):
            print(json.dumps({"bench": "flux_transformer_gpu", "steps": steps, **gpu_bench(steps)}))
    else:
        print(json.dumps({"bench": "flux_transformer_gpu", "result": "not measured (no CUDA)"}))


if __name__ == "__main__":
    main()
