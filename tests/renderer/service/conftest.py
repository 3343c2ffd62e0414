from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from omost_renderer.config import Settings
from omost_renderer.storage.stores import FileResultStore
from omost_renderer.worker.runner import Worker
from redis import Redis
from service_support import WorkerThread, make_settings

# Fixtures: imported so that pytest finds them in this conftest.
from service_support import redis_server as redis_server
from service_support import redis_url as redis_url


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    return make_settings(redis_url, tmp_path / "results")


@pytest.fixture
def start_worker(settings: Settings) -> Iterator[Callable[..., WorkerThread]]:
    from fake_renderer import FakeRenderer

    started: list[WorkerThread] = []

    def start(
        renderer: object | None = None, settings_: Settings | None = None, name: str | None = None
    ) -> WorkerThread:
        use = settings_ or settings
        client = Redis.from_url(use.redis_url, decode_responses=True, socket_timeout=5)
        worker = Worker(
            use,
            renderer or FakeRenderer(),  # type: ignore[arg-type]
            client,
            FileResultStore(use.results_dir),
            name=name or f"test-worker-{len(started)}",
        )
        thread = WorkerThread(worker).start()
        started.append(thread)
        return thread

    yield start
    for thread in started:
        if thread.thread.is_alive():
            thread.stop()
