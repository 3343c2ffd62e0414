"""Measurements of the GPU suite: timed renders, peak memory, device syncs, step-batch throughput.

Every timing synchronises the device before reading the clock, so queued kernels are counted.
On the CPU (smoke runs) there is no device memory or sync to count: those return ``None``.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
from omost_renderer.pipelines.rendering import RenderParams
from omost_renderer.pipelines.step_batch import (
    BatchingRenderer,
    RenderSteps,
    StepBatch,
    plain_render_steps,
)
from omost_schema import Canvas

#: Most jobs one throughput run holds (each keeps its latents and conditioning on the device).
MAX_CONCURRENCY = 8


def sync(device: torch.device | str) -> None:
    """Wait for the device's queued work (no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device | str) -> float:
    """Seconds ``fn`` takes, its device work included."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def peak_mib(fn: Callable[[], Any], device: torch.device | str) -> float | None:
    """Peak device memory allocated while ``fn`` runs (``torch.cuda.max_memory_allocated``), MiB.

    Returns:
        The peak over the whole process's allocations during ``fn`` (weights included), or
        ``None`` on the CPU.
    """
    if torch.device(device).type != "cuda":
        fn()
        return None
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    sync(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def syncs_counted(fn: Callable[[], Any], device: torch.device | str) -> int | None:
    """Host-device synchronisations ``fn`` makes, counted by torch's sync debug mode.

    ``torch.cuda.set_sync_debug_mode("warn")`` warns at each synchronising call (``.item()``,
    ``.cpu()``, a blocking copy, a data-dependent shape); the warnings are counted, not shown.

    Returns:
        The count, or ``None`` on the CPU (nothing to synchronise with).
    """
    if torch.device(device).type != "cuda":
        fn()
        return None
    sync(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def render_steps(renderer: Any, canvas: Canvas, params: RenderParams) -> RenderSteps:
    """The render as a generator of model calls; whole and unbatched without ``render_steps``."""
    if isinstance(renderer, BatchingRenderer):
        return renderer.render_steps(canvas, params)
    return plain_render_steps(renderer, canvas, params)


@dataclass(frozen=True)
class Throughput:
    """Jobs arriving together, rendered to the last.

    Attributes:
        jobs: Jobs in the run.
        batched: Whether the jobs were stepped together (else one at a time).
        images_per_minute: Jobs (one image each) per minute of the whole run.
        p50_s: Median seconds from arrival to a job's images.
        p95_s: 95th percentile of the same (the slowest job for 8 jobs or fewer).
    """

    jobs: int
    batched: bool
    images_per_minute: float
    p50_s: float
    p95_s: float


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def throughput(
    renderer: Any, canvas: Canvas, params: RenderParams, jobs: int, *, batched: bool
) -> Throughput:
    """Render ``jobs`` jobs that arrive together through ``StepBatch``, as the worker would.

    Args:
        renderer: A pipeline; one without ``render_steps`` runs each job whole (never shared).
        canvas: Every job's canvas.
        params: Every job's parameters; job ``i`` uses seed ``params.seed + i``.
        jobs: Jobs arriving together, 1 to ``MAX_CONCURRENCY``.
        batched: One ``StepBatch`` holding every job (else one job at a time, in order).

    Returns:
        Images per minute and per-job latency from the common arrival.

    Raises:
        ValueError: For ``jobs`` outside 1..``MAX_CONCURRENCY``.
        RuntimeError: When a job's render fails.
    """
    if not 1 <= jobs <= MAX_CONCURRENCY:
        raise ValueError(f"jobs must be within 1..{MAX_CONCURRENCY}, got {jobs}")
    device = renderer.device
    driver = cast(BatchingRenderer, renderer)
    done: dict[str, float] = {}
    sync(device)
    start = time.perf_counter()
    waves = [list(range(jobs))] if batched else [[i] for i in range(jobs)]
    for wave in waves:
        batch = StepBatch(driver, max_jobs=len(wave))
        outcomes = []
        for i in wave:
            job_params = params.model_copy(update={"seed": params.seed + i})
            outcome = batch.add(str(i), render_steps(renderer, canvas, job_params))
            outcomes += [outcome] if outcome is not None else []
            sync(device)
            if outcome is not None:
                done[outcome.job_id] = time.perf_counter() - start
        while len(batch):
            ended = batch.step()
            sync(device)
            for outcome in ended:
                done[outcome.job_id] = time.perf_counter() - start
            outcomes += ended
        failed = [o for o in outcomes if o.error is not None]
        if failed:
            raise RuntimeError(f"job {failed[0].job_id} failed") from failed[0].error
    total = max(done.values())
    latencies = list(done.values())
    return Throughput(
        jobs=jobs,
        batched=batched,
        images_per_minute=60.0 * jobs / total,
        p50_s=statistics.median(latencies),
        p95_s=_percentile(latencies, 0.95),
    )
