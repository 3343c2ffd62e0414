from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fake_renderer import FakeRenderer, canvas_json
from fastapi.testclient import TestClient
from omost_renderer.api import create_app
from omost_renderer.config import Settings
from omost_renderer.job_queue import constants
from omost_renderer.job_queue.api_queue import JobEvent, JobQueue
from omost_renderer.job_queue.jobs import JobStatus
from omost_renderer.job_queue.worker_queue import WorkerQueue, ensure_group
from redis import Redis
from service_support import RedisServer, WorkerThread, make_settings, wait_for

pytestmark = pytest.mark.redis


def body(**params: object) -> dict[str, object]:
    return {"canvas": canvas_json(), "width": 64, "height": 64, "steps": 6, **params}


def read_events(client: TestClient, job_id: str, last_event_id: str | None = None) -> list[dict]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events: list[dict] = []
    current: dict = {}
    with client.stream("GET", f"/v1/renders/{job_id}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line:
                if "data" in current:
                    events.append(current)
                current = {}
                continue
            field, _, value = line.partition(": ")
            if field in ("id", "event"):
                current[field] = value
            elif field == "data":
                current["data"] = json.loads(value)
    return events


def test_sse_delivers_progress_in_order_and_resumes(
    settings: Settings, start_worker: Callable[..., WorkerThread]
) -> None:
    with TestClient(create_app(settings)) as client:
        job_id = client.post("/v1/renders", json=body()).json()["id"]
        start_worker(FakeRenderer(step_sleep_s=0.02))
        everything = read_events(client, job_id)
        # Previews are extra progress events without an id: transient, never replayed.
        previews = [e for e in everything if "id" not in e]
        assert all(e["event"] == "progress" for e in previews)
        assert all(e["data"]["preview"].startswith("data:image/jpeg;base64,") for e in previews)
        assert {e["data"]["step"] for e in previews} <= {2, 4, 6}
        events = [e for e in everything if "id" in e]
        kinds = [(e["event"], e["data"].get("status", e["data"].get("step"))) for e in events]
        assert kinds == [
            ("status", "queued"),
            ("status", "running"),
            *[("progress", step) for step in range(1, 7)],
            ("status", "succeeded"),
        ]
        assert not any("preview" in e["data"] for e in events)
        resumed = read_events(client, job_id, last_event_id=events[4]["id"])
        assert [e["id"] for e in resumed] == [e["id"] for e in events[5:]]
        assert read_events(client, job_id, last_event_id=events[-1]["id"]) == []
        # A new connection to a job that just ended still starts with its latest preview.
        again = read_events(client, job_id)
        assert [e.get("id") for e in again] == [None, *[e["id"] for e in events]]
        assert again[0]["data"]["step"] == 6
        bad = client.get(f"/v1/renders/{job_id}/events", headers={"Last-Event-ID": "x"})
        assert bad.status_code == 400


def test_redis_restart_keeps_queued_jobs_and_services_recover(
    tmp_path: Path, start_worker: Callable[..., WorkerThread]
) -> None:
    server = RedisServer(tmp_path, aof=True)
    server.start()
    try:
        settings = make_settings(server.url, tmp_path / "results")
        with TestClient(create_app(settings)) as client:
            ids = [client.post("/v1/renders", json=body()).json()["id"] for _ in range(3)]
            server.kill()  # a crash: only the append-only file keeps the jobs
            down = client.get(f"/v1/renders/{ids[0]}")
            assert down.status_code == 503
            assert down.json()["error"]["code"] == "backend_unavailable"
            assert client.get("/ready").status_code == 503
            start_worker(FakeRenderer(), settings)  # starts while Redis is down
            server.start()
            wait_for(lambda: client.get("/ready").status_code == 200, what="API reconnect")

            def all_done() -> bool:
                statuses = [client.get(f"/v1/renders/{i}").json()["status"] for i in ids]
                return statuses == ["succeeded"] * 3

            wait_for(all_done, what="jobs to finish after the restart")
            later = client.post("/v1/renders", json=body()).json()["id"]
            wait_for(lambda: client.get(f"/v1/renders/{later}").json()["status"] == "succeeded")
    finally:
        server.kill()


def test_worker_recreates_a_lost_consumer_group(
    settings: Settings, start_worker: Callable[..., WorkerThread], redis_client: Redis
) -> None:
    start_worker(FakeRenderer())
    with TestClient(create_app(settings)) as client:
        first = client.post("/v1/renders", json=body()).json()["id"]
        wait_for(lambda: client.get(f"/v1/renders/{first}").json()["status"] == "succeeded")
        redis_client.flushall()  # e.g. Redis restarted without persistence
        again = client.post("/v1/renders", json=body()).json()["id"]
        wait_for(lambda: client.get(f"/v1/renders/{again}").json()["status"] == "succeeded")


class FinishBetweenReads(JobQueue):
    """A queue whose first blocking read comes back empty just as the job finishes."""

    def __init__(self, queue: JobQueue, finish: Callable[[], None]) -> None:
        super().__init__(queue.redis, queue.settings)
        self.finish = finish
        self.raced = False

    async def events(
        self, job_id: str, after: str, block_ms: int | None, *, previews_after: str | None = None
    ) -> tuple[list[JobEvent], str | None]:
        if block_ms is not None and not self.raced:
            self.raced = True
            self.finish()  # lands after the (empty) read, before the status check
            return [], previews_after
        return await super().events(job_id, after, block_ms, previews_after=previews_after)


def test_sse_sends_the_final_event_when_the_job_ends_between_reads(
    settings: Settings, redis_client: Redis
) -> None:
    with TestClient(create_app(settings)) as client:
        job_id = client.post("/v1/renders", json=body()).json()["id"]
        ensure_group(redis_client)
        worker = WorkerQueue(redis_client, settings, "racer")
        claim = worker.read_new(100)
        assert claim is not None
        started = worker.start(claim)
        assert started is not None
        service = client.app.state.service  # type: ignore[attr-defined]
        service.queue = FinishBetweenReads(
            service.queue, lambda: worker.finish(started, JobStatus.SUCCEEDED, {"images": "[]"})
        )
        queued = read_events(client, job_id)[0]["id"]
        events = read_events(client, job_id, last_event_id=queued)
        assert service.queue.raced
        assert [e["data"]["status"] for e in events] == ["running", "succeeded"]


def test_sse_of_a_long_ended_job_sends_its_final_event_from_the_record(
    settings: Settings, start_worker: Callable[..., WorkerThread], redis_client: Redis
) -> None:
    start_worker(FakeRenderer())
    with TestClient(create_app(settings)) as client:
        job_id = client.post("/v1/renders", json=body()).json()["id"]
        wait_for(lambda: client.get(f"/v1/renders/{job_id}").json()["status"] == "succeeded")
        everything = [e for e in read_events(client, job_id) if "id" in e]
        # What PREVIEW_TTL_S and EVENTS_LINGER_S do later: only the job's record is left.
        redis_client.delete(constants.previews_key(job_id), constants.events_key(job_id))
        assert read_events(client, job_id) == [everything[-1]]
        assert read_events(client, job_id, last_event_id=everything[2]["id"]) == [everything[-1]]
        assert read_events(client, job_id, last_event_id=everything[-1]["id"]) == []
