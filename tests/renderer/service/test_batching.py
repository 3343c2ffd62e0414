"""Step batching in the worker: jobs held together share model calls, each keeps its own fate.

Real Redis, real workers (threads, and a process for SIGTERM), and a fake BatchingRenderer whose
``denoise_batch`` records which jobs shared each model call.
"""

from __future__ import annotations

import io
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from batching_renderer import BAD_KERNEL, BatchingFakeRenderer
from fake_renderer import canvas_json
from fastapi.testclient import TestClient
from omost_renderer.api import create_app
from omost_renderer.config import Settings
from omost_renderer.job_queue import constants
from PIL import Image
from redis import Redis
from service_support import WorkerThread, make_settings, start_process, subprocess_env, wait_for

pytestmark = pytest.mark.redis


def body(description: str, **params: object) -> dict[str, object]:
    return {"canvas": canvas_json(description), "width": 64, "height": 64, "steps": 6, **params}


def record(redis: Redis, job_id: str) -> dict[str, str]:
    return cast(dict[str, str], redis.hgetall(constants.job_key(job_id)))


def stream(redis: Redis, key: str) -> list[dict[str, str]]:
    """The fields of every entry of the stream ``key``."""
    entries = cast(list[tuple[str, dict[str, str]]], redis.xrange(key))
    return [fields for _, fields in entries]


def step_of(redis: Redis, job_id: str) -> int:
    return int(record(redis, job_id).get("step") or 0)


def ended(redis: Redis, ids: list[str]) -> Callable[[], bool]:
    final = ("succeeded", "failed", "canceled")
    return lambda: all(record(redis, job_id).get("status") in final for job_id in ids)


def progress_steps(redis: Redis, job_id: str) -> list[int]:
    """The steps of the job's progress events, in order."""
    events = stream(redis, constants.events_key(job_id))
    return [int(json.loads(f["data"])["step"]) for f in events if f["type"] == "progress"]


@pytest.fixture
def batch_settings(redis_url: str, tmp_path: Path) -> Settings:
    return make_settings(redis_url, tmp_path / "results", max_batch=4, max_attempts=1)


def test_jobs_submitted_together_share_model_calls_and_keep_their_own_results(
    batch_settings: Settings, redis_client: Redis, start_worker: Callable[..., WorkerThread]
) -> None:
    renderer = BatchingFakeRenderer()
    names = [f"job {n}" for n in range(4)]
    with TestClient(create_app(batch_settings)) as client:
        ids = [
            client.post("/v1/renders", json=body(name, seed=100 + n)).json()["id"]
            for n, name in enumerate(names)
        ]
        start_worker(renderer, batch_settings)  # its first read takes all four
        wait_for(ended(redis_client, ids), what="the batch")
        views = [client.get(f"/v1/renders/{job_id}").json() for job_id in ids]
        # The counters reach /metrics with the next heartbeat.
        wait_for(
            lambda: "omost_render_renders_stepped_total 24.0" in client.get("/metrics").text,
            what="the batch counters in /metrics",
        )
        metrics = client.get("/metrics").text
    assert renderer.shared[0] == names  # one model call for the four renders' first step
    assert renderer.shared == [names] * 6
    for n, (job_id, view) in enumerate(zip(ids, views, strict=True)):
        assert view["status"] == "succeeded"
        assert [image["seed"] for image in view["images"]] == [100 + n]
        assert (batch_settings.results_dir / job_id / "1" / "0.png").is_file()
        assert progress_steps(redis_client, job_id) == [1, 2, 3, 4, 5, 6]
    assert "omost_render_model_calls_total 6.0" in metrics
    assert "omost_render_batch_rows_total 48.0" in metrics
    assert "omost_render_text_cache_misses_total 4.0" in metrics


def test_a_job_joins_a_running_batch_and_leaves_when_its_own_steps_end(
    batch_settings: Settings, redis_client: Redis, start_worker: Callable[..., WorkerThread]
) -> None:
    renderer = BatchingFakeRenderer(step_sleep_s=0.03)
    start_worker(renderer, batch_settings)
    with TestClient(create_app(batch_settings)) as client:
        long = client.post("/v1/renders", json=body("long", steps=30)).json()["id"]
        wait_for(lambda: step_of(redis_client, long) >= 3, what="the first steps")
        short = client.post("/v1/renders", json=body("short", steps=5)).json()["id"]
        wait_for(ended(redis_client, [long, short]), what="both jobs")
    joined = renderer.calls_with("short")
    assert len(joined) == 5
    assert joined[0] >= 3  # it joined at a step boundary, mid-way through the long one
    assert all(renderer.shared[n] == ["long", "short"] for n in joined)
    assert len(renderer.calls_with("long")) == 30
    long_job, short_job = record(redis_client, long), record(redis_client, short)
    assert (long_job["status"], short_job["status"]) == ("succeeded", "succeeded")
    assert float(short_job["finished_at"]) < float(long_job["finished_at"])


def test_canceling_a_job_mid_batch_leaves_the_others_finishing(
    batch_settings: Settings, redis_client: Redis, start_worker: Callable[..., WorkerThread]
) -> None:
    renderer = BatchingFakeRenderer(step_sleep_s=0.03)
    with TestClient(create_app(batch_settings)) as client:
        ids = [client.post("/v1/renders", json=body(n, steps=30)).json()["id"] for n in "abc"]
        start_worker(renderer, batch_settings)
        wait_for(lambda: all(step_of(redis_client, i) >= 2 for i in ids), what="the batch")
        assert client.post(f"/v1/renders/{ids[1]}/cancel").status_code == 200
        wait_for(ended(redis_client, ids), what="the batch to end")
        views = [client.get(f"/v1/renders/{job_id}").json() for job_id in ids]
    assert [view["status"] for view in views] == ["succeeded", "canceled", "succeeded"]
    assert views[1]["images"] == []
    with_b = renderer.calls_with("b")
    assert len(with_b) < 30
    # The canceled render left at its next step; the others went on without it.
    assert all(names == ["a", "c"] for names in renderer.shared[with_b[-1] + 1 :])
    assert len(renderer.calls_with("a")) == len(renderer.calls_with("c")) == 30


def test_a_poison_job_in_a_batch_fails_alone(
    batch_settings: Settings, redis_client: Redis, start_worker: Callable[..., WorkerThread]
) -> None:
    renderer = BatchingFakeRenderer()
    names = ["good 1", "a poison canvas", "good 2", "good 3"]
    with TestClient(create_app(batch_settings)) as client:
        ids = [client.post("/v1/renders", json=body(name)).json()["id"] for name in names]
        start_worker(renderer, batch_settings)
        wait_for(ended(redis_client, ids), what="the batch")
        views = [client.get(f"/v1/renders/{job_id}").json() for job_id in ids]
        wait_for(
            lambda: "omost_render_batch_splits_total 1.0" in client.get("/metrics").text,
            what="the split in /metrics",
        )
    assert [view["status"] for view in views] == ["succeeded", "failed", "succeeded", "succeeded"]
    assert views[1]["error"]["code"] == "render_error"
    # The shared call failed; retried one render at a time, the failure was the poison's alone.
    assert renderer.attempted[0] == names
    assert renderer.attempted[1:5] == [[name] for name in names]
    assert renderer.shared[:3] == [["good 1"], ["good 2"], ["good 3"]]
    assert renderer.shared[3:] == [["good 1", "good 2", "good 3"]] * 5
    dead = stream(redis_client, constants.DEAD_LETTER_KEY)
    assert [fields["job"] for fields in dead] == [ids[1]]


def test_a_poisoned_device_releases_every_job_of_the_batch_and_stops_the_worker(
    batch_settings: Settings, redis_client: Redis, start_worker: Callable[..., WorkerThread]
) -> None:
    renderer = BatchingFakeRenderer()
    names = ["good 1", f"a {BAD_KERNEL} canvas", "good 2"]
    with TestClient(create_app(batch_settings)) as client:
        ids = [client.post("/v1/renders", json=body(name, steps=50)).json()["id"] for name in names]
    thread = start_worker(renderer, batch_settings)
    thread.thread.join(timeout=30)  # a poisoned worker stops by itself
    assert not thread.thread.is_alive()
    assert thread.worker.exit_code == 3
    records = [record(redis_client, job_id) for job_id in ids]
    assert [r["status"] for r in records] == ["queued"] * 3
    assert [r["attempt"] for r in records] == ["0"] * 3  # every attempt refunded
    assert records[1]["error_code"] == "device_error"
    assert records[1]["device_releases"] == "1"
    # The neighbours are not blamed.
    assert ["device_releases" in records[n] for n in (0, 2)] == [False, False]


def test_max_batch_1_renders_one_job_at_a_time(
    redis_url: str, tmp_path: Path, redis_client: Redis, start_worker: Callable[..., WorkerThread]
) -> None:
    settings = make_settings(redis_url, tmp_path / "r", max_batch=1)
    renderer = BatchingFakeRenderer()
    with TestClient(create_app(settings)) as client:
        ids = [client.post("/v1/renders", json=body(n)).json()["id"] for n in "abc"]
        start_worker(renderer, settings)
        wait_for(ended(redis_client, ids), what="the jobs")
    assert [record(redis_client, i)["status"] for i in ids] == ["succeeded"] * 3
    assert renderer.shared == [["a"]] * 6 + [["b"]] * 6 + [["c"]] * 6


def test_a_stop_without_grace_releases_every_held_job(
    batch_settings: Settings, redis_client: Redis, start_worker: Callable[..., WorkerThread]
) -> None:
    renderer = BatchingFakeRenderer(step_sleep_s=0.03)
    with TestClient(create_app(batch_settings)) as client:
        ids = [client.post("/v1/renders", json=body(n, steps=100)).json()["id"] for n in "abc"]
    leaving = start_worker(renderer, batch_settings)
    wait_for(lambda: all(step_of(redis_client, i) >= 1 for i in ids), what="the batch")
    leaving.stop()  # grace 0: the batch goes back to the queue
    records = [record(redis_client, job_id) for job_id in ids]
    assert [r["status"] for r in records] == ["queued"] * 3
    assert [r["attempt"] for r in records] == ["0"] * 3
    assert redis_client.xlen(constants.STREAM_KEY) == 3


def test_sigterm_drains_the_batch_then_exits(
    batch_settings: Settings, redis_client: Redis, tmp_path: Path
) -> None:
    env = subprocess_env(
        batch_settings,
        OMOST_RENDERER_FACTORY="batching_renderer:build",
        OMOST_RENDERER_MAX_BATCH="4",
        OMOST_TEST_STEP_SLEEP_S="0.03",
    )
    with TestClient(create_app(batch_settings)) as client:
        ids = [client.post("/v1/renders", json=body(n, steps=40)).json()["id"] for n in "abc"]
        worker = start_process(["worker"], env, tmp_path / "worker.log")
        try:
            # All three held at once when the signal comes: the drain finishes a whole batch.
            wait_for(lambda: all(step_of(redis_client, i) >= 1 for i in ids), what="the batch")
            assert all(record(redis_client, i)["status"] == "running" for i in ids)
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=60) == 0
            views = [client.get(f"/v1/renders/{job_id}").json() for job_id in ids]
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert [view["status"] for view in views] == ["succeeded"] * 3
    assert [view["attempts"] for view in views] == [1] * 3


def test_the_tiny_sdxl_pipeline_renders_jobs_together_as_it_renders_them_alone(
    batch_settings: Settings, redis_client: Redis, start_worker: Callable[..., WorkerThread]
) -> None:
    from omost_renderer.pipelines.rendering import RenderParams
    from omost_renderer.pipelines.sdxl.tiny import build_tiny_renderer
    from omost_schema import Canvas

    renderer = build_tiny_renderer()
    names = ["a red cat", "a blue dog", "a green bird"]
    with TestClient(create_app(batch_settings)) as client:
        ids = [
            client.post("/v1/renders", json=body(name, steps=4, seed=n)).json()["id"]
            for n, name in enumerate(names)
        ]
        thread = start_worker(renderer, batch_settings)
        wait_for(ended(redis_client, ids), timeout=120, what="the tiny batch")
        pngs = [client.get(f"/v1/renders/{job_id}/images/0").content for job_id in ids]
    batch = thread.worker.loop.batch
    assert batch.calls_made > 0
    assert batch.renders_stepped == 3 * batch.calls_made  # every UNet call carried all three
    # The pipeline's own text cache is what the worker reports.
    assert thread.worker.counters.text_cache_sizes()["entries"] > 0
    for n, (name, png) in enumerate(zip(names, pngs, strict=True)):
        params = RenderParams(width=64, height=64, steps=4, seed=n)
        [alone] = renderer.render(Canvas.model_validate(canvas_json(name)), params)
        batched = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
        # One UNet call for three jobs: the same image as alone, up to float rounding.
        assert np.abs(batched - np.asarray(alone.image, dtype=np.int16)).max() <= 2


def test_a_job_past_its_deadline_in_a_batch_is_released_and_the_others_go_on(
    batch_settings: Settings, redis_client: Redis, start_worker: Callable[..., WorkerThread]
) -> None:
    renderer = BatchingFakeRenderer(step_sleep_s=0.03)
    with TestClient(create_app(batch_settings)) as client:
        # The late job is the second held: the heartbeat watches every held job, not the first.
        other = client.post("/v1/renders", json=body("other", steps=40)).json()["id"]
        late = client.post("/v1/renders", json=body("late", steps=100)).json()["id"]
        thread = start_worker(renderer, batch_settings)
        wait_for(lambda: step_of(redis_client, late) >= 2, what="the batch")
        (held,) = [r for r in thread.worker.held.snapshot() if r.job.claim.job_id == late]
        held.deadline_s = 0.0  # its deadline passes now; the other job's does not
        wait_for(ended(redis_client, [late, other]), what="both jobs")
        views = [client.get(f"/v1/renders/{job_id}").json() for job_id in (late, other)]
    assert views[0]["status"] == "failed"  # one attempt: released for good
    assert views[0]["error"]["code"] == "deadline_exceeded"
    assert views[1]["status"] == "succeeded"
    with_late = renderer.calls_with("late")
    assert len(with_late) < 100
    assert all(names == ["other"] for names in renderer.shared[with_late[-1] + 1 :])
    assert len(renderer.calls_with("other")) == 40


def test_sigterm_releases_what_the_grace_does_not_cover(
    batch_settings: Settings, redis_client: Redis, tmp_path: Path
) -> None:
    env = subprocess_env(
        batch_settings,
        OMOST_RENDERER_FACTORY="batching_renderer:build",
        OMOST_RENDERER_MAX_BATCH="4",
        OMOST_RENDERER_SHUTDOWN_GRACE_S="0.3",
        OMOST_TEST_STEP_SLEEP_S="0.05",
    )
    with TestClient(create_app(batch_settings)) as client:
        ids = [client.post("/v1/renders", json=body(n, steps=100)).json()["id"] for n in "abc"]
        worker = start_process(["worker"], env, tmp_path / "worker.log")
        try:
            wait_for(lambda: all(step_of(redis_client, i) >= 1 for i in ids), what="the batch")
            worker.send_signal(signal.SIGTERM)  # 0.3 s cannot cover 100 steps of 0.05 s
            assert worker.wait(timeout=60) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    records = [record(redis_client, job_id) for job_id in ids]
    assert [r["status"] for r in records] == ["queued"] * 3
    assert [r["attempt"] for r in records] == ["0"] * 3  # released, the attempts refunded
    assert all(0 < int(r["step"]) < 100 for r in records)
