from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fake_renderer import FakeRenderer, canvas_json
from fastapi.testclient import TestClient
from omost_renderer.api import create_app
from omost_renderer.cli import main
from omost_renderer.config import Settings
from omost_renderer.job_queue import constants
from omost_renderer.job_queue.api_queue import JobQueue
from omost_renderer.job_queue.api_queue import ensure_group as async_ensure_group
from omost_renderer.job_queue.jobs import JobRequest, JobStatus
from omost_renderer.job_queue.worker_queue import WorkerQueue, ensure_group
from omost_renderer.pipelines.rendering import RenderParams
from omost_renderer.storage.stores import FileResultStore
from omost_renderer.worker.runner import Worker
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from service_support import WorkerThread, make_settings, start_process, subprocess_env, wait_for

pytestmark = pytest.mark.redis


def body(description: str = "a cat", **params: object) -> dict[str, object]:
    return {"canvas": canvas_json(description), "width": 64, "height": 64, "steps": 4, **params}


def status_of(redis: Redis, job_id: str) -> str:
    return str(redis.hget(constants.job_key(job_id), "status"))


def submit_direct(redis: Redis, settings: Settings) -> str:
    """Queue one job the way the API does, from synchronous test code."""
    return asyncio.run(_submit(settings))


async def _submit(settings: Settings) -> str:
    client = AsyncRedis.from_url(settings.redis_url, decode_responses=True)
    try:
        await async_ensure_group(client)
        request = JobRequest.model_validate({"canvas": canvas_json(), "params": RenderParams()})
        return (await JobQueue(client, settings).submit(request)).job_id
    finally:
        await client.aclose()


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
    second = WorkerQueue(redis_client, settings.model_copy(update={"reclaim_after_s": 0.5}), "b")
    claim = first.read_new(100)
    assert claim is not None
    job = first.start(claim)
    assert job is not None
    # Five beats 0.2 s apart: the job lives past the reclaim time (0.5 s), never idle for it.
    for _ in range(5):
        time.sleep(0.2)
        assert second.reclaim() is None
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


def test_reclaim_finds_a_dead_entry_behind_ten_live_ones(
    settings: Settings, redis_client: Redis
) -> None:
    ensure_group(redis_client)
    fast = settings.model_copy(update={"reclaim_after_s": 0.2})
    ids = [submit_direct(redis_client, fast) for _ in range(12)]
    live = WorkerQueue(redis_client, fast, "live")
    dead = WorkerQueue(redis_client, fast, "dead")
    live_claims = [live.read_new(100) for _ in range(11)]
    dead_claim = dead.read_new(100)
    assert dead_claim is not None
    assert dead_claim.job_id == ids[-1]
    time.sleep(0.3)  # every entry is now idle past the reclaim time ...
    entries = [claim.entry_id for claim in live_claims if claim is not None]
    # ... and the live worker's heartbeat re-claims its eleven, older than the dead one's.
    redis_client.xclaim(constants.STREAM_KEY, constants.GROUP_NAME, "live", 0, entries, justid=True)
    rescuer = WorkerQueue(redis_client, fast, "rescuer")
    found = rescuer.reclaim()
    assert found == dead_claim
    assert rescuer.reclaim() is None  # nothing else is idle


def test_late_heartbeat_of_a_finished_job_does_not_fence_the_next(
    settings: Settings, redis_client: Redis
) -> None:
    """A heartbeat about job 1 that answers after job 2 started must not touch job 2."""
    from omost_renderer.job_queue.worker_queue import Claim, StartedJob
    from omost_renderer.storage.stores import FileResultStore
    from omost_renderer.worker.job_watch import RunningJob
    from omost_renderer.worker.runner import Worker

    first = submit_direct(redis_client, settings)
    renderer = FakeRenderer()
    worker = Worker(settings, renderer, redis_client, FileResultStore(settings.results_dir))  # type: ignore[arg-type]
    ensure_group(redis_client)
    assert worker.run_once()
    assert status_of(redis_client, first) == "succeeded"
    entry = redis_client.hget(constants.job_key(first), "entry")
    old = RunningJob(StartedJob(Claim(str(entry), first), 1, 0.0, "{}"), 0.0, deadline_s=60)
    second = submit_direct(redis_client, settings)

    class LateHeartbeat(FakeRenderer):
        def render(self, canvas: Any, params: RenderParams, on_step: Any = None) -> Any:
            worker._watch(old)  # the heartbeat thread's answer about job 1 lands now
            return super().render(canvas, params, on_step)

    worker.renderer = LateHeartbeat()
    assert worker.run_once()
    assert old.fenced.is_set()  # job 1 is no longer this worker's to write
    record = redis_client.hgetall(constants.job_key(second))
    assert record["status"] == "succeeded"
    assert record["attempt"] == "1"


def test_stopping_worker_hands_back_an_entry_it_read(
    settings: Settings,
    redis_client: Redis,
    tmp_path: Path,
    start_worker: Callable[..., WorkerThread],
) -> None:
    env = subprocess_env(
        settings, OMOST_RENDERER_BLOCK_MS="10000", OMOST_RENDERER_WORKER_NAME="leaving"
    )
    leaving = start_process(["worker"], env, tmp_path / "leaving.log")
    try:

        def blocked_reading() -> bool:
            clients = redis_client.client_list()
            return any(c["cmd"] == "xreadgroup" and "b" in c["flags"] for c in clients)

        wait_for(blocked_reading, what="the worker to wait for an entry")
        leaving.send_signal(signal.SIGTERM)  # the blocking read goes on after the signal ...
        job_id = submit_direct(redis_client, settings)  # ... and returns this entry
        assert leaving.wait(timeout=60) == 0
        assert status_of(redis_client, job_id) == "queued"  # never started by a stopping worker
        start_worker(name="stayer")
        wait_for(lambda: status_of(redis_client, job_id) == "succeeded", what="the other worker")
        record = redis_client.hgetall(constants.job_key(job_id))
        assert record["worker"] == "stayer"
        assert record["attempt"] == "1"
    finally:
        if leaving.poll() is None:
            leaving.kill()
            leaving.wait()


def test_worker_without_a_model_refuses_to_start(settings: Settings, tmp_path: Path) -> None:
    env = subprocess_env(settings)
    env.pop("OMOST_RENDERER_FACTORY")
    env.pop("OMOST_RENDERER_MODEL", None)
    log = tmp_path / "worker.log"
    worker = start_process(["worker"], env, log)
    assert worker.wait(timeout=60) == 2
    assert "set OMOST_RENDERER_MODEL" in log.read_text()
    assert Settings.model_fields["model"].default is None  # random weights only by name


def test_background_failures_never_stop_the_worker(
    settings: Settings, redis_client: Redis, start_worker: Callable[..., WorkerThread]
) -> None:
    job_id = submit_direct(redis_client, settings)
    redis_client.config_set("maxmemory", "1")  # Redis is full: every write answers OOM
    try:
        thread = start_worker(name="survivor")
        worker = thread.worker
        wait_for(lambda: worker.errors.is_active("heartbeat"), what="a failed heartbeat")
        wait_for(lambda: worker.errors.is_active("queue"), what="a failed job start")
        assert thread.thread.is_alive()
        assert status_of(redis_client, job_id) == "queued"
    finally:
        redis_client.config_set("maxmemory", "0")
    # Both threads carry on: the job runs, the health key comes back with what it survived.
    wait_for(lambda: status_of(redis_client, job_id) == "succeeded", what="the job after OOM")
    wait_for(lambda: not worker.errors.is_active("heartbeat"), what="heartbeat recovery")
    with TestClient(create_app(settings)) as client:
        metrics = client.get("/metrics").text
    assert 'omost_render_worker_errors_total{component="heartbeat"}' in metrics
    assert 'omost_render_worker_errors_total{component="queue"}' in metrics
    health = json.loads(str(redis_client.get(constants.worker_health_key("survivor"))))
    assert health["errors"]["heartbeat"]["count"] >= 1
    assert "maxmemory" in health["errors"]["queue"]["message"]


class FlakyCleanupStore(FileResultStore):
    """A result store whose cleanup fails until ``healed``; counts cleanups."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.healed = False
        self.cleanups = 0

    def cleanup(self, older_than_s: float) -> int:
        self.cleanups += 1
        if not self.healed:
            raise OSError("S3 answered 503 Slow Down")
        return super().cleanup(older_than_s)


def test_cleanup_failure_is_retried_and_reported(
    redis_url: str, tmp_path: Path, redis_client: Redis
) -> None:
    settings = make_settings(redis_url, tmp_path / "r", cleanup_interval_s=0.5)
    store = FlakyCleanupStore(settings.results_dir)
    worker = Worker(settings, FakeRenderer(), redis_client, store, name="cleaner")  # type: ignore[arg-type]
    thread = WorkerThread(worker).start()
    try:
        with TestClient(create_app(settings)) as client:

            def reported() -> bool:
                problems = client.get("/ready").json()["problems"]
                return [(p["worker"], p["component"]) for p in problems] == [("cleaner", "cleanup")]

            wait_for(reported, what="/ready to report the failing cleanup")
            assert client.get("/ready").status_code == 200  # the API itself can serve
            job_id = client.post("/v1/renders", json=body()).json()["id"]
            wait_for(lambda: status_of(redis_client, job_id) == "succeeded", what="jobs go on")
            store.healed = True
            wait_for(lambda: client.get("/ready").json()["status"] == "ready", what="recovery")
            assert (
                'omost_render_worker_errors_total{component="cleanup"}'
                in client.get("/metrics").text
            )
        assert thread.thread.is_alive()
    finally:
        thread.stop()


def test_cleanup_runs_once_per_interval_across_workers(
    redis_url: str, tmp_path: Path, redis_client: Redis
) -> None:
    settings = make_settings(redis_url, tmp_path / "r", cleanup_interval_s=3600)
    stores = [FlakyCleanupStore(settings.results_dir) for _ in range(3)]
    for store in stores:
        store.healed = True
    workers = [
        Worker(settings, FakeRenderer(), redis_client, store, name=f"w{n}")  # type: ignore[arg-type]
        for n, store in enumerate(stores)
    ]
    ensure_group(redis_client)
    for _ in range(3):
        for worker in workers:
            worker.cleanup.next_look = 0.0  # due on every worker, as after a restart
            worker.cleanup.maybe_run()
        job_id = submit_direct(redis_client, settings)
        assert workers[0].run_once()  # jobs do not trigger cleanups either
        assert status_of(redis_client, job_id) == "succeeded"
    assert sum(store.cleanups for store in stores) == 1


def test_job_past_its_deadline_is_released(
    redis_url: str, tmp_path: Path, redis_client: Redis, start_worker: Callable[..., WorkerThread]
) -> None:
    # 0.2 s plus 0.01 s per step is far less than 40 steps of 0.05 s.
    settings = make_settings(
        redis_url, tmp_path / "r", deadline_base_s=0.2, deadline_step_s=0.01, max_attempts=1
    )
    renderer = FakeRenderer(step_sleep_s=0.05)
    start_worker(renderer, settings)
    with TestClient(create_app(settings)) as client:
        job_id = client.post("/v1/renders", json=body(steps=40)).json()["id"]
        wait_for(lambda: status_of(redis_client, job_id) == "failed", what="the deadline")
        view = client.get(f"/v1/renders/{job_id}").json()
    assert view["error"]["code"] == "deadline_exceeded"
    assert not (settings.results_dir / job_id).exists()


def test_a_job_that_poisons_every_device_is_failed(
    redis_url: str, tmp_path: Path, redis_client: Redis, start_worker: Callable[..., WorkerThread]
) -> None:
    from faulty_renderer import build_poisoned

    settings = make_settings(redis_url, tmp_path / "r", max_attempts=1)
    with TestClient(create_app(settings)) as client:
        job_id = client.post("/v1/renders", json=body("bad-kernel")).json()["id"]
        for n in range(2):
            thread = start_worker(build_poisoned(), settings, name=f"gpu{n}")
            thread.thread.join(timeout=30)  # a poisoned worker stops by itself
            assert thread.worker.exit_code == 3
        view = client.get(f"/v1/renders/{job_id}").json()
    assert view["status"] == "failed"
    assert view["error"]["code"] == "device_error"
