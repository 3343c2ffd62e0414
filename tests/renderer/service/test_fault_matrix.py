"""The worker rows of the fault matrix (docs/operations.md), each with real worker processes.

Every row asserts the same guarantee: the accepted job is not lost, and exactly one result lands
(one attempt's images, nothing from an attempt that lost the job). A worker killed mid-job is in
``test_worker.py`` (``test_sigkilled_worker_job_is_finished_by_another``).
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_renderer import canvas_json
from fastapi.testclient import TestClient
from omost_renderer.api import create_app
from omost_renderer.config import Settings
from omost_renderer.job_queue import constants
from redis import Redis
from service_support import RedisServer, make_settings, start_process, subprocess_env, wait_for

pytestmark = pytest.mark.redis


class Workers:
    """Worker processes of one test, killed at its end."""

    def __init__(self, settings: Settings, folder: Path) -> None:
        self.settings = settings
        self.folder = folder
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, **env: str) -> subprocess.Popen[bytes]:
        variables = subprocess_env(self.settings, OMOST_RENDERER_WORKER_NAME=name, **env)
        process = start_process(["worker"], variables, self.log(name))
        self.processes.append(process)
        return process

    def log(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    started = Workers(settings, tmp_path)
    yield started
    started.stop_all()


def body(description: str = "a cat", **params: object) -> dict[str, object]:
    return {"canvas": canvas_json(description), "width": 64, "height": 64, "steps": 4, **params}


def job(redis: Redis, job_id: str) -> dict[str, str]:
    return redis.hgetall(constants.job_key(job_id))


def step_of(redis: Redis, job_id: str) -> int:
    return int(job(redis, job_id).get("step") or 0)


def results(settings: Settings, job_id: str) -> list[str]:
    root = settings.results_dir
    return sorted(str(p.relative_to(root)) for p in (root / job_id).rglob("*.png"))


def finished(client: TestClient, job_id: str) -> dict[str, Any]:
    view: dict[str, Any] = {}

    def done() -> bool:
        response = client.get(f"/v1/renders/{job_id}")
        if response.status_code == 503:
            return False  # Redis is restarting
        view.update(response.json())
        return view["status"] in ("succeeded", "failed", "canceled")

    wait_for(done, what=f"job {job_id} to end")
    return view


def test_sigstopped_worker_past_the_reclaim_time_is_fenced(
    settings: Settings, redis_client: Redis, workers: Workers
) -> None:
    frozen = workers.start("frozen", OMOST_TEST_STEP_SLEEP_S="0.1")
    with TestClient(create_app(settings)) as client:
        job_id = client.post("/v1/renders", json=body(steps=30)).json()["id"]
        wait_for(lambda: step_of(redis_client, job_id) >= 2, what="the first steps")
        frozen.send_signal(signal.SIGSTOP)  # a stall longer than the reclaim time (1 s)
        workers.start("rescuer")
        finished(client, job_id)
        frozen.send_signal(signal.SIGCONT)
        # Its next write (a step or a heartbeat) is refused: it drops its work.
        wait_for(lambda: "was taken over" in workers.log("frozen").read_text(), what="the fence")
        assert frozen.poll() is None  # and it carries on as a worker
        view = client.get(f"/v1/renders/{job_id}").json()
    assert view["status"] == "succeeded"
    assert view["attempts"] == 2
    assert results(settings, job_id) == [f"{job_id}/2/0.png"]


def test_hung_render_is_released_and_the_worker_exits(
    settings: Settings, redis_client: Redis, workers: Workers
) -> None:
    hung = workers.start(
        "hung",
        OMOST_RENDERER_FACTORY="faulty_renderer:build_hanging",
        OMOST_RENDERER_STALL_AFTER_S="0.5",
    )
    with TestClient(create_app(settings)) as client:
        job_id = client.post("/v1/renders", json=body("hang here")).json()["id"]
        # No step for the stall time: the job goes back to the queue, its attempt counted...
        wait_for(lambda: job(redis_client, job_id).get("error_code") == "stalled", what="release")
        # ... and the worker, whose render never comes back, exits for its supervisor.
        assert hung.wait(timeout=60) == 4
        assert job(redis_client, job_id)["status"] == "queued"
        workers.start("healthy")  # draws every canvas
        view = finished(client, job_id)
    assert view["status"] == "succeeded"
    assert view["attempts"] == 2
    assert results(settings, job_id) == [f"{job_id}/2/0.png"]
    assert not redis_client.exists(constants.worker_health_key("hung"))


def test_poisoned_device_releases_the_job_unburnt_and_exits(
    settings: Settings, redis_client: Redis, workers: Workers
) -> None:
    poisoned = workers.start("poisoned", OMOST_RENDERER_FACTORY="faulty_renderer:build_poisoned")
    with TestClient(create_app(settings)) as client:
        job_id = client.post("/v1/renders", json=body("a bad-kernel canvas")).json()["id"]
        assert poisoned.wait(timeout=60) == 3  # exits non-zero: the supervisor restarts it
        record = job(redis_client, job_id)
        assert record["status"] == "queued"
        assert record["attempt"] == "0"  # the attempt was refunded
        assert record["error_code"] == "device_error"
        other = client.post("/v1/renders", json=body()).json()["id"]
        workers.start("replacement")
        view = finished(client, job_id)
        assert finished(client, other)["status"] == "succeeded"
    assert view["status"] == "succeeded"
    assert view["attempts"] == 1
    assert results(settings, job_id) == [f"{job_id}/1/0.png"]
    assert "illegal memory access" in workers.log("poisoned").read_text()


def test_out_of_memory_fails_the_job_once_and_the_worker_goes_on(
    settings: Settings, redis_client: Redis, workers: Workers
) -> None:
    worker = workers.start(
        "small-gpu", OMOST_RENDERER_FACTORY="faulty_renderer:build_out_of_memory"
    )
    with TestClient(create_app(settings)) as client:
        huge = client.post("/v1/renders", json=body("huge poster")).json()["id"]
        view = finished(client, huge)
        after = client.post("/v1/renders", json=body()).json()["id"]
        assert finished(client, after)["status"] == "succeeded"
    assert view["status"] == "failed"
    assert view["attempts"] == 1  # the same parameters would run out of memory again
    assert view["error"]["code"] == "out_of_memory"
    assert [f["job"] for _, f in redis_client.xrange(constants.DEAD_LETTER_KEY)] == [huge]
    assert results(settings, huge) == []
    assert worker.poll() is None


def test_redis_restarted_mid_render_loses_no_job(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", aof=True)
    (tmp_path / "redis").mkdir()
    server.start()
    settings = make_settings(server.url, tmp_path / "results")
    workers = Workers(settings, tmp_path)
    redis = Redis.from_url(server.url, decode_responses=True, socket_timeout=5)
    try:
        workers.start("survivor", OMOST_TEST_STEP_SLEEP_S="0.05")
        with TestClient(create_app(settings)) as client:
            job_id = client.post("/v1/renders", json=body(steps=40)).json()["id"]
            wait_for(lambda: step_of(redis, job_id) >= 2, what="the first steps")
            server.kill()  # a crash: the append-only file (fsync always) keeps every write
            server.start()
            view = finished(client, job_id)
        assert view["status"] == "succeeded"
        attempt = view["attempts"]
        assert results(settings, job_id) == [f"{job_id}/{attempt}/0.png"]
    finally:
        workers.stop_all()
        redis.close()
        server.kill()


def test_storage_error_is_retried_reported_and_recovers(
    settings: Settings, redis_client: Redis, workers: Workers
) -> None:
    # The results folder cannot be created (a file is in its way): every write fails.
    settings.results_dir.parent.mkdir(parents=True, exist_ok=True)
    settings.results_dir.write_text("in the way")
    workers.start("writer")
    with TestClient(create_app(settings)) as client:
        job_id = client.post("/v1/renders", json=body()).json()["id"]

        def storage_reported() -> bool:
            ready = client.get("/ready").json()
            return any(p["component"] == "storage" for p in ready["problems"])

        wait_for(storage_reported, what="/ready to report the storage failure")
        assert client.get("/ready").json()["status"] == "degraded"
        metrics = client.get("/metrics").text
        assert 'omost_render_worker_errors_total{component="storage"}' in metrics
        assert job(redis_client, job_id)["status"] == "running"  # held, not failed
        settings.results_dir.unlink()  # the store comes back
        view = finished(client, job_id)
        wait_for(lambda: client.get("/ready").json()["status"] == "ready", what="recovery")
    assert view["status"] == "succeeded"
    assert view["attempts"] == 1
    assert results(settings, job_id) == [f"{job_id}/1/0.png"]
