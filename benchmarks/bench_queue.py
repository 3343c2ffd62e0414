"""Queue overhead of the renderer service, with a no-op pipeline.

Starts its own redis-server and worker processes (``omost-renderer worker`` with the no-op
pipeline below), then measures:

* enqueue-to-start latency (p50, p99): one job at a time into an idle queue, the workers waiting;
* throughput (jobs per second) with 1 and 4 workers: a backlog drained as fast as possible;

each with step batching off (``OMOST_RENDERER_MAX_BATCH=1``) and on (4). Every job is a 25-step
render whose steps are model calls the worker's step driver batches (a call costs nothing), so the
per-step Redis writes, the batching and the result saving are the overhead measured. Run:
``python -m benchmarks.bench_queue [--jobs N] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from omost_renderer.config import Settings
from omost_renderer.job_queue import constants
from omost_renderer.job_queue.api_queue import JobQueue, ensure_group
from omost_renderer.job_queue.jobs import JobRequest
from omost_renderer.pipelines.render_start import RenderStart
from omost_renderer.pipelines.rendering import RenderedImage, RenderParams, StepCallback
from omost_renderer.pipelines.step_batch import DenoiseCall, RenderSteps
from omost_schema import Canvas
from PIL import Image
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

ROOT = Path(__file__).resolve().parents[1]
STEPS = 25
#: ``OMOST_RENDERER_MAX_BATCH`` of the two runs: batching off, and on.
MAX_BATCHES = (1, 4)
#: A 25-step SDXL render at 1024x1024 takes about this long on one current datacenter GPU.
REFERENCE_RENDER_S = 3.0

CANVAS = {
    "global_description": {
        "description": "a cat",
        "detailed_descriptions": [],
        "tags": "cat",
        "HTML_web_color_name": "white",
    },
    "local_descriptions": [],
}


class NoopRenderer:
    """Reports every step and returns one 64x64 image; each step is a model call that does nothing.

    Its renders are generators of model calls (``render_steps``), so the worker holds up to
    ``max_batch`` of them and steps them together, as it does a real pipeline's.
    """

    def render(
        self, canvas: Canvas, params: RenderParams, on_step: StepCallback | None = None
    ) -> list[RenderedImage]:
        for step in range(1, params.steps + 1):
            if on_step is not None:
                on_step(step, params.steps, None)
        image = Image.new("RGB", (params.width, params.height))
        return [RenderedImage(image=image, seed=params.seed)]

    def render_steps(
        self,
        canvas: Canvas,
        params: RenderParams,
        on_step: StepCallback | None = None,
        *,
        start: RenderStart | None = None,
    ) -> RenderSteps:
        """The render as a generator of one (empty) model call per step."""
        for step in range(1, params.steps + 1):
            yield DenoiseCall(key=(params.width, params.height), rows=1, payload=None)
            if on_step is not None:
                on_step(step, params.steps, None)
        image = Image.new("RGB", (params.width, params.height))
        return [RenderedImage(image=image, seed=params.seed)]

    def denoise_batch(self, calls: Sequence[DenoiseCall]) -> list[torch.Tensor]:
        """One empty result per call."""
        return [torch.empty(0) for _ in calls]


def build_noop_renderer() -> NoopRenderer:
    """Factory for ``OMOST_RENDERER_FACTORY``."""
    return NoopRenderer()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--dir", str(folder), "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    client = Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except Exception:
            time.sleep(0.05)
    client.close()
    return process, f"redis://127.0.0.1:{port}/0"


def _start_workers(
    count: int, redis_url: str, results: Path, max_batch: int
) -> list[subprocess.Popen[bytes]]:
    env = dict(os.environ)
    env.update(
        {
            "OMOST_REDIS_URL": redis_url,
            "OMOST_RENDERER_MAX_BATCH": str(max_batch),
            "OMOST_RENDERER_FACTORY": "benchmarks.bench_queue:build_noop_renderer",
            "OMOST_RENDERER_RESULTS_DIR": str(results),
            "OMOST_RENDERER_PREVIEW_EVERY": "0",
            "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
        }
    )
    return [
        subprocess.Popen(
            [sys.executable, "-m", "omost_renderer.cli", "worker"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=30)


async def _wait_workers(redis: AsyncRedis, count: int) -> None:
    pattern = f"{constants.WORKER_HEALTH_KEY_PREFIX}*"
    for _ in range(1200):  # worker start-up (imports) takes seconds; give up after a minute
        if len([key async for key in redis.scan_iter(match=pattern)]) >= count:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{count} workers did not start")


async def _wait_done(redis: AsyncRedis, job_ids: list[str]) -> None:
    remaining = set(job_ids)
    while remaining:
        async with redis.pipeline(transaction=False) as pipe:
            for job_id in remaining:
                pipe.hget(constants.job_key(job_id), "status")
            statuses = await pipe.execute()
        remaining = {j for j, s in zip(remaining, statuses, strict=True) if s != "succeeded"}
        if remaining:
            await asyncio.sleep(0.005)


async def _latency(queue: JobQueue, request: JobRequest, jobs: int) -> list[float]:
    latencies = []
    for _ in range(jobs):
        job_id = (await queue.submit(request)).job_id
        await _wait_done(queue.redis, [job_id])
        fields = await queue.get(job_id)
        assert fields is not None
        latencies.append(float(fields["started_at"]) - float(fields["created_at"]))
    return latencies


async def _throughput(
    queue: JobQueue,
    request: JobRequest,
    jobs: int,
    workers: int,
    redis_url: str,
    results: Path,
    max_batch: int,
) -> float:
    job_ids = [(await queue.submit(request)).job_id for _ in range(jobs)]
    processes = _start_workers(workers, redis_url, results, max_batch)
    try:
        await _wait_workers(queue.redis, workers)
        # Time from the first start to the last finish, so process start-up is not counted.
        await _wait_done(queue.redis, job_ids)
        starts, ends = [], []
        for job_id in job_ids:
            fields = await queue.get(job_id)
            assert fields is not None
            starts.append(float(fields["started_at"]))
            ends.append(float(fields["finished_at"]))
        return jobs / (max(ends) - min(starts))
    finally:
        _stop(processes)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _renders_per_call(redis: AsyncRedis) -> float:
    """Mean renders per model call, from the counters the workers keep (0 before any call)."""
    calls = float(await redis.hget(constants.METRICS_KEY, "batch:calls") or 0)
    renders = float(await redis.hget(constants.METRICS_KEY, "batch:renders") or 0)
    return renders / calls if calls else 0.0


async def _measure(
    redis: AsyncRedis, queue: JobQueue, request: JobRequest, jobs: int, max_batch: int, url: str
) -> dict[str, float]:
    """The figures of one ``max_batch``, keys suffixed ``_batch<n>``."""
    results = Path(tempfile.mkdtemp(prefix="bench-queue-results-"))
    report: dict[str, float] = {}
    for workers in (1, 4):
        await redis.flushall()
        await ensure_group(redis)
        rate = await _throughput(queue, request, jobs, workers, url, results, max_batch)
        report[f"jobs_per_s_{workers}_workers"] = rate
        # Read once the workers stopped, so the last heartbeat's counters are in.
        report[f"renders_per_call_{workers}_workers"] = await _renders_per_call(redis)
    await redis.flushall()
    await ensure_group(redis)
    processes = _start_workers(1, url, results, max_batch)
    try:
        await _wait_workers(redis, 1)
        latencies = await _latency(queue, request, min(jobs, 300))
    finally:
        _stop(processes)
    report["start_latency_p50_ms"] = 1000 * statistics.median(latencies)
    report["start_latency_p99_ms"] = 1000 * _percentile(latencies, 0.99)
    per_job_s = 1 / report["jobs_per_s_1_workers"] + report["start_latency_p50_ms"] / 1000
    report["overhead_per_job_ms"] = 1000 * per_job_s
    report["overhead_vs_3s_render_pct"] = 100 * per_job_s / REFERENCE_RENDER_S
    return {f"{name}_batch{max_batch}": value for name, value in report.items()}


async def _run(jobs: int) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="bench-queue-"))
    server, redis_url = _start_redis(folder)
    settings = Settings.model_validate({"redis_url": redis_url, "max_backlog": 10 * jobs + 10})
    redis = AsyncRedis.from_url(redis_url, decode_responses=True)
    request = JobRequest(
        canvas=Canvas.model_validate(CANVAS), params=RenderParams(width=64, height=64, steps=STEPS)
    )
    queue = JobQueue(redis, settings)
    report: dict[str, float] = {}
    try:
        for max_batch in MAX_BATCHES:
            report.update(await _measure(redis, queue, request, jobs, max_batch, redis_url))
    finally:
        await redis.aclose()
        server.terminate()
        server.wait()
    return report


def main() -> None:
    """Run the benchmark and print (and optionally save) the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500, help="jobs per throughput run")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    report = asyncio.run(_run(args.jobs))
    for name, value in report.items():
        print(f"{name:32s} {value:10.3f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
