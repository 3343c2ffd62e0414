"""The GPU suite: every GPU measurement of the renderer in one process, ratios side by side.

``python -m benchmarks gpu`` (``make bench BENCH=gpu``) on one H100/H200-class GPU, full-size
SDXL, FLUX.1 and FLUX.2 klein built from configs with random weights (``gpu_models``), within
``--budget-s`` (default 480 s: a section that would not fit is skipped and says so; one that
raises is recorded and the run goes on, exiting 1):

1. SDXL 896x1152, 25 UNet evaluations with CFG: diffusers' plain processors (77 tokens, no
   regions) vs ours (batched guidance, regional) vs Omost's separate passes with materialised
   logits (``bench_attention.unet_bench``); goals: ours within 10% of plain, >= 1.5x Omost's.
2. One whole render (25 steps, three regions): seconds, peak device memory, device syncs per step;
   and the same render with separate guidance passes (Omost's order, our kernel).
3. Images per minute at 1, 2, 4 and 8 jobs arriving together, one at a time vs stepped together
   by ``StepBatch`` (the worker's driver), p50/p95 latency per job; goal at 4 jobs: >= 1.5x the
   images per minute of one at a time with p95 < 2x a lone render.
4. Each speed option applied at load to a fresh pipeline against a fresh default one
   (channels-last, fused QKV; then regional compile: the first render with the compile, then
   steady renders).
5. FLUX.1-dev-sized 1024x1024, regional (default schedule) vs stock processors, 4 and 28 steps;
   FLUX.2 klein 4B-sized, 4 steps (``gpu_flux``).

``--smoke`` runs the same code on the CPU with the tiny pipelines, tiny sizes and 2 steps, in
seconds (figures meaningless; used by the tests). The table replaces the "GPU suite" section
of docs/benchmarks.md only on CUDA, or when ``--write-docs`` is given.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omost_renderer.pipelines.families import Family
from omost_renderer.pipelines.rendering import RenderParams
from omost_renderer.pipelines.sdxl.pipeline_sdxl import OmostSDXLPipeline
from omost_renderer.pipelines.speed_options import SpeedOptions, apply_speed_options

from benchmarks import gpu_models
from benchmarks.bench_attention import unet_bench
from benchmarks.gpu_flux import flux_section
from benchmarks.gpu_measure import peak_mib, syncs_counted, throughput, timed
from benchmarks.gpu_report import (
    Row,
    Suite,
    mib_row,
    ratio_row,
    replace_section,
    seconds_row,
    section,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
#: Upper bound of ``--budget-s``: the sections' estimates must leave room under a 10-minute limit.
MAX_BUDGET_S = 540.0


def _params(scale: gpu_models.SuiteScale, steps: int | None = None) -> RenderParams:
    height, width = scale.sdxl_size
    return RenderParams(width=width, height=height, steps=steps or scale.sdxl_steps, seed=1)


def _sdxl(scale: gpu_models.SuiteScale) -> Any:
    if scale.smoke:
        return gpu_models.tiny_sdxl()
    return gpu_models.full_sdxl(scale.device, torch.float16)


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def sdxl_passes(suite: Suite, pipe: Any) -> None:
    """Section 1: UNet evaluations, plain vs ours vs Omost's separate passes."""
    scale = suite.scale
    seconds = unet_bench(pipe.unet, scale.sdxl_size, scale.sdxl_steps, pipe.unet.dtype)
    ours_vs_plain = seconds["ours_s"] / seconds["plain_s"]
    omost_vs_ours = seconds["omost_separate_naive_s"] / seconds["ours_s"]
    label = f"SDXL {scale.sdxl_size[1]}x{scale.sdxl_size[0]}, {scale.sdxl_steps} UNet steps"
    suite.add(
        seconds_row(f"{label}: plain diffusers (77 tokens, no regions)", seconds["plain_s"]),
        seconds_row(f"{label}: ours (batched guidance, regional)", seconds["ours_s"]),
        seconds_row(f"{label}: Omost's separate passes", seconds["omost_separate_naive_s"]),
        ratio_row("ours / plain", ours_vs_plain, "<= 1.10x", ours_vs_plain <= 1.10),
        ratio_row("Omost's passes / ours", omost_vs_ours, ">= 1.5x", omost_vs_ours >= 1.5),
    )


def sdxl_render(suite: Suite, pipe: Any) -> float:
    """Section 2: one whole render, its peak memory and its device syncs.

    Returns:
        Seconds of a lone render (the reference of the later sections).
    """
    canvas, params = gpu_models.suite_canvas(), _params(suite.scale)
    device = pipe.device
    pipe.render(canvas, params)  # warm-up: kernels chosen, caches filled
    lone = timed(lambda: pipe.render(canvas, params), device)
    peak = peak_mib(lambda: pipe.render(canvas, params), device)
    syncs = syncs_counted(lambda: pipe.render(canvas, params), device)
    steps = params.steps
    suite.add(
        seconds_row(f"SDXL render, ours (text encoding, {steps} steps, VAE decode)", lone),
        mib_row("SDXL render: peak device memory (weights included)", peak),
        Row(
            "SDXL render: device syncs per step", None if syncs is None else f"{syncs / steps:.1f}"
        ),
    )
    return lone


def sdxl_throughput(suite: Suite, pipe: Any, lone_s: float) -> None:
    """Section 3: images per minute and latency, one at a time vs stepped together."""
    canvas, params = gpu_models.suite_canvas(), _params(suite.scale)
    batching = hasattr(pipe, "render_steps")
    if not batching:
        suite.notes.append(
            "The SDXL pipeline has no `render_steps` yet: `StepBatch` runs each job whole"
            " (`plain_render_steps`), so the stepped-together rows measure no batching."
        )
    for jobs in suite.scale.concurrency:
        if not suite.fits(f"throughput at {jobs} jobs", 2.2 * jobs * lone_s):
            continue
        alone = throughput(pipe, canvas, params, jobs, batched=False)
        together = throughput(pipe, canvas, params, jobs, batched=True)
        gain = together.images_per_minute / alone.images_per_minute
        goal = jobs == 4
        suite.add(
            Row(f"jobs {jobs}, one at a time: images/min, p50 / p95 latency",
                f"{alone.images_per_minute:.1f}, {alone.p50_s:.2f} / {alone.p95_s:.2f} s"),
            Row(f"jobs {jobs}, stepped together: images/min, p50 / p95 latency",
                f"{together.images_per_minute:.1f}, {together.p50_s:.2f} / {together.p95_s:.2f} s"),
            ratio_row(f"jobs {jobs}: stepped together / one at a time, images/min", gain,
                      ">= 1.5x" if goal else "", (gain >= 1.5) if goal else None),
        )  # fmt: skip
        if goal:
            p95 = together.p95_s / lone_s
            suite.add(ratio_row("4 jobs stepped together: p95 latency / lone render", p95,
                                "< 2x", p95 < 2.0))  # fmt: skip


def _option_render(suite: Suite, options: SpeedOptions) -> tuple[float, float | None]:
    """Seconds and peak memory of a render on a fresh pipeline with ``options`` applied at load.

    Fresh, as the worker loads it: the pipeline installs its processors at its first UNet call,
    after the options changed the UNet (a fused layer then gets the fused processor).
    """
    torch.manual_seed(0)
    pipe = _sdxl(suite.scale)
    apply_speed_options(pipe.unet, Family.SDXL, options)
    canvas, params = gpu_models.suite_canvas(), _params(suite.scale)
    pipe.render(canvas, params)  # warm-up
    seconds = timed(lambda: pipe.render(canvas, params), pipe.device)
    return seconds, peak_mib(lambda: pipe.render(canvas, params), pipe.device)


def sdxl_options(suite: Suite) -> None:
    """Section 4a: channels-last and fused QKV, each on a fresh pipeline, against the default."""
    off_s, off_peak = _option_render(suite, SpeedOptions())
    suite.add(
        seconds_row("SDXL render, fresh pipeline, no option (reference of the option rows)", off_s),
        mib_row("no option: peak device memory", off_peak),
    )
    for name, options in (
        ("OMOST_RENDERER_CHANNELS_LAST", SpeedOptions(channels_last=True)),
        ("OMOST_RENDERER_FUSE_QKV", SpeedOptions(fuse_qkv=True)),
    ):
        on_s, peak = _option_render(suite, options)
        _free()
        suite.add(
            seconds_row(f"SDXL render with {name}", on_s),
            ratio_row(f"{name}: off / on (speed-up)", off_s / on_s, "> 1.0x to turn on", None),
            mib_row(f"{name}: peak device memory", peak),
        )


def sdxl_separate(suite: Suite, pipe: Any, lone_s: float) -> None:
    """Section 2b: the render with Omost's separate guidance passes (our kernel), same weights.

    Runs last on ``pipe``'s weights: the second pipeline installs its own processors on the
    shared UNet, which ``pipe`` cannot render with afterwards.
    """
    canvas, params = gpu_models.suite_canvas(), _params(suite.scale)
    apart = OmostSDXLPipeline(pipe.unet, pipe.vae, pipe.encoders, model_name=pipe.model_name,
                              batched_guidance=False)  # fmt: skip
    apart.render(canvas, params)  # warm-up
    separate = timed(lambda: apart.render(canvas, params), apart.device)
    suite.add(
        seconds_row("SDXL render, separate guidance passes (our kernel)", separate),
        ratio_row("separate passes / ours, whole render", separate / lone_s, "", None),
    )


def sdxl_compile(suite: Suite) -> None:
    """Section 4b: regional compile on a fresh UNet: the first render, then steady renders."""
    if suite.scale.smoke:
        # Inductor on the CPU builds C++ for minutes; the smoke run checks the other paths.
        suite.notes.append("compile: not run in smoke mode")
        return
    pipe = _sdxl(suite.scale)
    canvas, params = gpu_models.suite_canvas(), _params(suite.scale)
    off_s = timed(lambda: pipe.render(canvas, params), pipe.device)
    apply_speed_options(pipe.unet, Family.SDXL, SpeedOptions(compile=True))
    first = timed(lambda: pipe.render(canvas, params), pipe.device)
    # A recompile at a later render (new guards failing) would show in these.
    steady = [timed(lambda: pipe.render(canvas, params), pipe.device) for _ in range(2)]
    suite.add(
        seconds_row("SDXL render before compile (fresh UNet)", off_s),
        seconds_row("OMOST_RENDERER_COMPILE: first render (compile included)", first),
        seconds_row("OMOST_RENDERER_COMPILE: 2nd and 3rd render, the slower", max(steady)),
        ratio_row("OMOST_RENDERER_COMPILE: off / on (speed-up)", off_s / max(steady),
                  "> 1.0x to turn on", None),
    )  # fmt: skip


#: Runs a section if it fits the budget: (name, estimated seconds, the section).
SectionRunner = Callable[[str, float, Callable[[], object]], None]


def _sdxl_sections(suite: Suite, section: SectionRunner) -> None:
    """Sections 1 to 4a on one SDXL pipeline (the options on fresh ones), freed on return."""
    pipe = _sdxl(suite.scale)
    lone = {"s": 10.0}  # replaced by the measured lone render

    def render() -> None:
        lone["s"] = sdxl_render(suite, pipe)

    section("SDXL UNet passes", 60, lambda: sdxl_passes(suite, pipe))
    section("SDXL render", 60, render)
    section("SDXL throughput", 4 * lone["s"], lambda: sdxl_throughput(suite, pipe, lone["s"]))
    section("SDXL options", 60 + 9 * lone["s"], lambda: sdxl_options(suite))
    section("SDXL separate passes", 3 * lone["s"], lambda: sdxl_separate(suite, pipe, lone["s"]))


def run(
    scale: gpu_models.SuiteScale,
    budget_s: float,
    progress: Callable[[Suite], None] | None = None,
) -> Suite:
    """Every section in order, within ``budget_s`` seconds (each checked before it starts).

    A section that raises (out of memory, say) is recorded in ``suite.failures`` and the next
    one runs; ``progress`` is called after each section (the docs are rewritten as it goes, so a
    run cut short still leaves what it measured).
    """
    suite = Suite(scale, budget_s)
    torch.manual_seed(0)

    def section(name: str, needs_s: float, fn: Callable[[], object]) -> None:
        if suite.fits(name, needs_s):
            suite.attempt(name, fn)
            _free()
            if progress is not None:
                progress(suite)

    suite.attempt("SDXL", lambda: _sdxl_sections(suite, section))
    _free()
    section("FLUX.1", 90, lambda: flux_section(suite, "FLUX.1", scale.flux_steps))
    section("FLUX.2 klein", 40, lambda: flux_section(suite, "FLUX.2 klein", scale.flux2_steps))
    section("compile", 150, lambda: sdxl_compile(suite))
    return suite


def main(argv: list[str] | None = None) -> int:
    """Run the suite; print the table; write the docs on CUDA (or with ``--write-docs``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU")
    parser.add_argument("--budget-s", type=float, default=480.0,
                        help=f"time budget in seconds (at most {MAX_BUDGET_S:.0f})")  # fmt: skip
    parser.add_argument("--write-docs", action="store_true", help="write docs even off CUDA")
    args = parser.parse_args(argv)
    if not 0 < args.budget_s <= MAX_BUDGET_S:
        parser.error(f"--budget-s must be within (0, {MAX_BUDGET_S:.0f}]")
    if not args.smoke and not torch.cuda.is_available():
        print("no CUDA device: GPU suite skipped (run with --smoke for the CPU code paths)")
        return 0
    if args.smoke:
        torch.set_num_threads(1)
    scale = gpu_models.SMOKE if args.smoke else gpu_models.FULL
    device = "smoke run on the CPU (tiny models)" if args.smoke else torch.cuda.get_device_name()
    device += f", torch {torch.__version__}, {time.strftime('%Y-%m-%d')}"
    write = args.write_docs or not args.smoke

    def partial_docs(suite: Suite) -> None:
        if write:
            notes = [*suite.notes, *suite.failures, "run in progress or cut short"]
            replace_section(DOCS, section(suite.rows, device, notes))

    suite = run(scale, args.budget_s, partial_docs)
    text = section(suite.rows, device, [*suite.notes, *suite.failures])
    print("\n" + text)
    if write:
        replace_section(DOCS, text)
        print(f"wrote {DOCS}")
    return 1 if suite.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
