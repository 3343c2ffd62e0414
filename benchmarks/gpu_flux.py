"""The GPU suite's transformer families: FLUX.1 and FLUX.2 klein, regional vs stock processors.

Both renders share one set of weights: the stock pipeline is built first and timed, then a
regional pipeline over the same transformer (building it installs the regional processors, so
the stock renders must come first). Each step count gets a one-step warm-up render. Last, the
regional pipeline is timed again with fused QKV projections (``OMOST_RENDERER_FUSE_QKV``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from omost_renderer.pipelines.flux.pipeline_flux import OmostFluxPipeline
from omost_renderer.pipelines.rendering import RenderParams
from omost_renderer.pipelines.speed_options import fuse_qkv
from omost_schema import Canvas

from benchmarks import gpu_models
from benchmarks.gpu_measure import peak_mib, timed
from benchmarks.gpu_report import Suite, mib_row, ratio_row, seconds_row

#: Goal of a regional render's time against the stock processors' (mask and base pass included).
REGIONAL_GOAL = 1.3


def _stock(family: str, scale: gpu_models.SuiteScale) -> Any:
    if family == "FLUX.1":
        if scale.smoke:
            return gpu_models.tiny_flux(regional=False)
        return gpu_models.full_flux(scale.device, torch.bfloat16, regional=False)
    if scale.smoke:
        return gpu_models.tiny_flux2(regional=False)
    return gpu_models.full_flux2(scale.device, torch.bfloat16, regional=False)


def _regional(stock: Any) -> Any:
    """A regional pipeline over ``stock``'s weights (installs the processors on them)."""
    if isinstance(stock, OmostFluxPipeline):
        return OmostFluxPipeline(stock.transformer, stock.vae, stock.encoders,
                                 model_name=stock.model_name, regional=True)  # fmt: skip
    from omost_renderer.pipelines.flux2.pipeline_flux2 import OmostFlux2Pipeline

    return OmostFlux2Pipeline(
        stock.transformer, stock.vae, stock.encoder, scheduler_config=stock.scheduler_config,
        is_distilled=stock.is_distilled, model_name=stock.model_name, regional=True,
    )  # fmt: skip


def _seconds(pipe: Any, canvas: Canvas, params: RenderParams) -> float:
    pipe.render(canvas, params.model_copy(update={"steps": 1}))  # warm-up
    return timed(partial(pipe.render, canvas, params), pipe.device)


def flux_section(suite: Suite, family: str, steps_list: tuple[int, ...]) -> None:
    """Regional vs stock renders of ``family`` (``FLUX.1`` or ``FLUX.2 klein``) at each step count.

    Args:
        suite: The run (its scale gives the sizes; rows are added to it).
        family: Which transformer family.
        steps_list: Step counts to time, each side by side.
    """
    scale = suite.scale
    height, width = scale.flux_size
    canvas = gpu_models.suite_canvas()
    stock = _stock(family, scale)
    timings: dict[tuple[str, int], float] = {}
    peaks: dict[str, float | None] = {}
    regional: Any = None
    for name in ("stock", "regional"):
        pipe = stock if name == "stock" else _regional(stock)
        regional = pipe
        for steps in steps_list:
            params = RenderParams(width=width, height=height, steps=steps, seed=1)
            timings[name, steps] = _seconds(pipe, canvas, params)
        first = RenderParams(width=width, height=height, steps=steps_list[0], seed=1)
        peaks[name] = peak_mib(partial(pipe.render, canvas, first), pipe.device)
    # OMOST_RENDERER_FUSE_QKV on the regional pipeline, against its own unfused time above.
    fuse_qkv(regional.transformer)
    fused = _seconds(regional, canvas, first)
    for steps in steps_list:
        ratio = timings["regional", steps] / timings["stock", steps]
        label = f"{family} {width}x{height}, {steps} steps"
        suite.add(
            seconds_row(f"{label}: stock processors", timings["stock", steps]),
            seconds_row(f"{label}: regional", timings["regional", steps]),
            ratio_row(f"{family} {steps} steps: regional / stock", ratio,
                      f"<= {REGIONAL_GOAL}x", ratio <= REGIONAL_GOAL),
        )  # fmt: skip
    suite.add(
        mib_row(f"{family} regional render: peak device memory", peaks["regional"]),
        mib_row(f"{family} stock render: peak device memory", peaks["stock"]),
        seconds_row(f"{family} regional, {steps_list[0]} steps, OMOST_RENDERER_FUSE_QKV", fused),
        ratio_row(f"{family} OMOST_RENDERER_FUSE_QKV: off / on (speed-up)",
                  timings["regional", steps_list[0]] / fused, "> 1.0x to turn on", None),
    )  # fmt: skip
