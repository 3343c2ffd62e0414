from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fake_renderer import FakeRenderer, canvas_json
from fastapi.testclient import TestClient
from omost_renderer import constants
from omost_renderer.api import create_app
from omost_renderer.cli import main
from omost_renderer.config import Settings
from omost_renderer.jobs import JobRequest, JobStatus
from omost_renderer.rendering import RenderParams
from omost_renderer.worker_queue import WorkerQueue, ensure_group
from redis import Redis
from service_support import WorkerThread, make_settings, start_process, subprocess_env, wait_for

pytestmark = pytest.mark.redis


def body(description: str = "a cat", **params: object) -> dict[str, object]:
    return {"canvas": canvas_json(description), "width": 64, "height": 64, "steps": 4, **params}


def status_of(redis: Redis, job_id: str) -> str:
    return str(redis.hget(constants.job_key(job_id), "status"))


def submit_direct(redis: Redis, settings: Settings) -> str:
    """Queue one job with the same script the API uses, synchronously."""
    from omost_renderer import queue_scripts

    job_id = "job-" + str(redis.incr("test:ids"))
    request = JobRequest.model_validate({"canvas": canvas_json(), "params": RenderParams()})
    script = redis.register_script(queue_scripts.SUBMIT)
    job_key = constants.job_key(job_id)
    keys = [constants.STREAM_KEY, job_key, "unused", constants.events_key(job_id), job_key]
    args = [job_id, 100, 60, "0", request.model_dump_json(), settings.max_attempts, "0", "{}"]
    args += ["", "", ""]  # request digest, believed job, notes: no idempotency key here
    script(keys=keys, args=args)
    return job_id


def test_poison_job_is_dead_lettered_while_others_flow(
    redis_url: str, tmp_path: Path, redis_client: Redis, start_worker: Callable[..., WorkerThread]
) -> None:
    settings = make_settings(redis_url, tmp_path / "r", max_attempts=2)
    renderer = FakeRenderer()
    start_worker(renderer, settings)
    with TestClient(create_app(settings)) as client:
        poison = client.post("/v1/renders", json=body("poison pill")).json()["id"]
        good = [client.post("/v1/renders", json=body()).json()["id"] for _ in range(3)]
        wait_for(lambda: status_of(redis_client, poison) == "failed", what="dead letter")
        wait_for(lambda: all(status_of(redis_client, i) == "succeeded" for i in good))
        job = client.get(f"/v1/renders/{poison}").json()
    assert job["attempts"] == 2
    assert job["error"]["code"] == "render_error"
    dead = redis_client.xrange(constants.DEAD_LETTER_KEY)
    assert [fields["job"] for _, fields in dead] == [poison]
    assert renderer.calls == 2 + 3


def test_stale_attempt_is_fenced_out(settings: Settings, redis_client: Redis) -> None:
    ensure_group(redis_client)
    job_id = submit_direct(redis_client, settings)
    fast = settings.model_copy(update={"reclaim_after_s": 0.001})
    first = WorkerQueue(redis_client, fast, "first")
    second = WorkerQueue(redis_client, fast, "second")
    claim = first.read_new(100)
    assert claim is not None
    stale = first.start(claim)
    assert stale is not None
    assert stale.attempt == 1
    time.sleep(0.01)  # let the entry idle past the 1 ms reclaim time
    reclaimed = second.reclaim()
    assert reclaimed is not None
    assert reclaimed.job_id == job_id
    fresh = second.start(reclaimed)
    assert fresh is not None
    assert fresh.attempt == 2
    assert first.progress(stale, 1, 4, None) == "fenced"
    assert not first.heartbeat(stale)
    assert not first.finish(stale, JobStatus.SUCCEEDED, {"images": "[]"})
    assert second.progress(fresh, 1, 4, None) == "ok"
    assert second.finish(fresh, JobStatus.SUCCEEDED, {"images": "[]"})
    assert status_of(redis_client, job_id) == "succeeded"
    assert redis_client.hget(constants.METRICS_KEY, "redeliveries") == "1"


def test_heartbeat_keeps_a_long_job_from_being_reclaimed(
    settings: Settings, redis_client: Redis
) -> None:
    ensure_group(redis_client)
    submit_direct(redis_client, settings)
    first = WorkerQueue(redis_client, settings, "first")
    second = WorkerQueue(redis_client, settings.model_copy(update={"reclaim_after_s": 0.3}), "b")
    claim = first.read_new(100)
    assert claim is not None
    job = first.start(claim)
    assert job is not None
    for _ in range(5):
        wait_for(lambda: second.reclaim() is None, timeout=1)
        assert first.heartbeat(job)
    idle = redis_client.xpending_range(constants.STREAM_KEY, constants.GROUP_NAME, "-", "+", 1)
    assert idle[0]["consumer"] == "first"


def test_sigkilled_worker_job_is_finished_by_another(
    settings: Settings, redis_client: Redis, tmp_path: Path
) -> None:
    env = subprocess_env(settings, OMOST_TEST_STEP_SLEEP_S="0.1")
    doomed = start_process(["worker"], env, tmp_path / "doomed.log")
    rescuer: subprocess.Popen[bytes] | None = None
    try:
        with TestClient(create_app(settings)) as client:
            job_id = client.post("/v1/renders", json=body(steps=30)).json()["id"]
            wait_for(lambda: int(redis_client.hget(constants.job_key(job_id), "step") or 0) >= 2)
            doomed.send_signal(signal.SIGKILL)
            doomed.wait()
            rescuer = start_process(["worker"], env, tmp_path / "rescuer.log")
            wait_for(lambda: status_of(redis_client, job_id) in ("succeeded", "failed"))
            job = client.get(f"/v1/renders/{job_id}").json()
        assert job["status"] == "succeeded"
        assert job["attempts"] == 2
        files = sorted(p.relative_to(settings.results_dir) for p in settings.results_dir.rglob("*"))
        assert [str(p) for p in files if p.suffix == ".png"] == [f"{job_id}/2/0.png"]
    finally:
        for process in (doomed, rescuer):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


def test_sigterm_finishes_the_running_job_then_exits(
    settings: Settings, redis_client: Redis, tmp_path: Path
) -> None:
    env = subprocess_env(settings, OMOST_TEST_STEP_SLEEP_S="0.05")
    worker = start_process(["worker"], env, tmp_path / "worker.log")
    try:
        with TestClient(create_app(settings)) as client:
            job_id = client.post("/v1/renders", json=body(steps=20)).json()["id"]
            wait_for(lambda: int(redis_client.hget(constants.job_key(job_id), "step") or 0) >= 1)
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=60) == 0
            job = client.get(f"/v1/renders/{job_id}").json()
        assert job["status"] == "succeeded"
        assert job["attempts"] == 1
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def test_release_on_shutdown_hands_the_job_back(
    settings: Settings, redis_client: Redis, start_worker: Callable[..., WorkerThread]
) -> None:
    with TestClient(create_app(settings)) as client:
        leaving = start_worker(FakeRenderer(step_sleep_s=0.05))
        job_id = client.post("/v1/renders", json=body(steps=100)).json()["id"]
        wait_for(lambda: int(redis_client.hget(constants.job_key(job_id), "step") or 0) >= 1)
        leaving.stop()  # no grace: the job goes back to the queue
        assert client.get(f"/v1/renders/{job_id}").json()["status"] == "queued"
        start_worker(FakeRenderer())
        wait_for(lambda: status_of(redis_client, job_id) == "succeeded")
        assert client.get(f"/v1/renders/{job_id}").json()["attempts"] == 1


def test_worker_check_reports_a_live_worker(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    start_worker: Callable[..., WorkerThread],
    redis_client: Redis,
) -> None:
    monkeypatch.setenv("OMOST_REDIS_URL", settings.redis_url)
    assert main(["worker", "--check"]) == 1
    start_worker(name="probed")
    wait_for(lambda: redis_client.exists(constants.worker_health_key("probed")))
    assert main(["worker", "--check"]) == 0
    monkeypatch.setenv("OMOST_RENDERER_WORKER_NAME", "someone-else")
    assert main(["worker", "--check"]) == 1


def test_worker_check_fails_without_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    from service_support import free_port

    monkeypatch.setenv("OMOST_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    assert main(["worker", "--check"]) == 1


def test_job_that_kills_every_worker_is_dead_lettered(
    settings: Settings, redis_client: Redis
) -> None:
    one_try = settings.model_copy(update={"reclaim_after_s": 0.001, "max_attempts": 1})
    ensure_group(redis_client)
    job_id = submit_direct(redis_client, one_try)
    crashed = WorkerQueue(redis_client, one_try, "crashed")
    claim = crashed.read_new(100)
    assert claim is not None
    assert crashed.start(claim) is not None  # ... and the process dies here
    time.sleep(0.01)
    survivor = WorkerQueue(redis_client, one_try, "survivor")
    reclaimed = survivor.reclaim()
    assert reclaimed is not None
    assert survivor.start(reclaimed) is None
    job = redis_client.hgetall(constants.job_key(job_id))
    assert job["status"] == "failed"
    assert job["error_code"] == "attempts_exhausted"
    assert [f["job"] for _, f in redis_client.xrange(constants.DEAD_LETTER_KEY)] == [job_id]
    assert redis_client.xlen(constants.STREAM_KEY) == 0
    assert redis_client.xpending(constants.STREAM_KEY, constants.GROUP_NAME)["pending"] == 0
