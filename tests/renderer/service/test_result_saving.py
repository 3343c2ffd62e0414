"""Results are saved off the step loop: the next job renders meanwhile, the pool is bounded.

Real Redis and a worker thread; the store holds every write until the test lets it go.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import cast

import pytest
from fake_renderer import FakeRenderer, canvas_json
from fastapi.testclient import TestClient
from omost_renderer.api import create_app
from omost_renderer.config import Settings
from omost_renderer.job_queue import constants
from omost_renderer.storage.stores import FileResultStore
from omost_renderer.worker.result_saving import MAX_PENDING_SAVES
from omost_renderer.worker.runner import Worker
from redis import Redis
from service_support import WorkerThread, wait_for

pytestmark = pytest.mark.redis


class HeldStore(FileResultStore):
    """A file store whose writes wait until ``open`` is set."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.open = threading.Event()

    def put(self, key: str, data: bytes) -> None:
        assert self.open.wait(60)
        super().put(key, data)


def body(description: str) -> dict[str, object]:
    return {"canvas": canvas_json(description), "width": 64, "height": 64, "steps": 3}


def record(redis: Redis, job_id: str) -> dict[str, str]:
    return cast(dict[str, str], redis.hgetall(constants.job_key(job_id)))


def held_jobs(redis: Redis, name: str) -> list[str]:
    """The jobs the worker's health key says it holds."""
    value = redis.get(constants.worker_health_key(name))
    return cast(list[str], json.loads(str(value))["jobs"]) if value else []


def test_the_next_job_renders_while_the_last_one_is_saved_and_the_pool_is_bounded(
    settings: Settings, redis_client: Redis
) -> None:
    store = HeldStore(settings.results_dir)
    renderer = FakeRenderer()
    worker = Worker(settings, renderer, redis_client, store, name="saver")
    thread = WorkerThread(worker).start()
    count = MAX_PENDING_SAVES + 2
    assert count == len("abcdef")
    try:
        with TestClient(create_app(settings)) as client:
            ids = [
                client.post("/v1/renders", json=body(f"job {n}")).json()["id"] for n in range(count)
            ]
            # Every save waits: the loop renders the next jobs until the pool is full, then the
            # job after them waits, rendered, for a place.
            waiting = ids[MAX_PENDING_SAVES]
            wait_for(lambda: record(redis_client, waiting).get("step") == "3", what="a full pool")
            wait_for(lambda: len(held_jobs(redis_client, "saver")) == count - 1)
            assert record(redis_client, ids[-1])["status"] == "queued"
            # Jobs being saved are still running, and still held: their claims are kept fresh.
            assert [record(redis_client, i)["status"] for i in ids[:-1]] == ["running"] * (
                count - 1
            )
            assert renderer.calls == count - 1
            store.open.set()
            wait_for(
                lambda: all(record(redis_client, i).get("status") == "succeeded" for i in ids),
                what="every result",
            )
        for job_id in ids:
            assert (settings.results_dir / job_id / "1" / "0.png").is_file()
    finally:
        store.open.set()
        thread.stop()


def test_a_stopping_worker_waits_for_its_pending_saves(
    settings: Settings, redis_client: Redis
) -> None:
    store = HeldStore(settings.results_dir)
    worker = Worker(settings, FakeRenderer(), redis_client, store, name="leaving")
    thread = WorkerThread(worker).start()
    try:
        with TestClient(create_app(settings)) as client:
            job_id = client.post("/v1/renders", json=body("saved late")).json()["id"]
            wait_for(lambda: record(redis_client, job_id).get("step") == "3", what="the render")
            worker.stop(grace_s=0)
            thread.thread.join(timeout=0.5)
            assert thread.thread.is_alive()  # waiting for the save, not gone
            store.open.set()
            thread.thread.join(timeout=30)
            assert not thread.thread.is_alive()
            view = client.get(f"/v1/renders/{job_id}").json()
        assert view["status"] == "succeeded"
        assert view["attempts"] == 1
    finally:
        store.open.set()
        if thread.thread.is_alive():
            thread.stop()
