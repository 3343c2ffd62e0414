"""Fair scheduling: one API key's backlog never starves another key's job (real Redis, a worker)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from fake_renderer import FakeRenderer, canvas_json
from omost_renderer.config import Settings
from omost_renderer.errors import QueueFullError
from omost_renderer.job_queue import constants
from omost_renderer.job_queue.api_queue import JobQueue
from omost_renderer.job_queue.jobs import JobRequest
from omost_renderer.pipelines.rendering import RenderParams
from omost_schema import Canvas
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from service_support import WorkerThread, wait_for

pytestmark = pytest.mark.redis

T = TypeVar("T")


def job(description: str) -> JobRequest:
    canvas = Canvas.model_validate(canvas_json(description))
    return JobRequest(canvas=canvas, params=RenderParams(width=64, height=64, steps=1))


def run(settings: Settings, work: Callable[[JobQueue], Coroutine[Any, Any, T]]) -> T:
    """Run ``work`` with a JobQueue of its own event loop."""

    async def main() -> T:
        redis = AsyncRedis.from_url(settings.redis_url, decode_responses=True)
        try:
            return await work(JobQueue(redis, settings))
        finally:
            await redis.aclose()

    return asyncio.run(main())


def submit(settings: Settings, key_name: str, descriptions: list[str]) -> list[str]:
    async def work(queue: JobQueue) -> list[str]:
        ids = []
        for description in descriptions:
            submission = await queue.submit(job(description), fields={"key_name": key_name})
            ids.append(submission.job_id)
        return ids

    return run(settings, work)


def positions(settings: Settings, ids: list[str]) -> list[int | None]:
    async def work(queue: JobQueue) -> list[int | None]:
        return [await queue.queue_position(job_id) for job_id in ids]

    return run(settings, work)


def test_a_later_job_of_another_key_starts_within_two_jobs(
    settings: Settings, redis_client: Redis, start_worker: Callable[..., WorkerThread]
) -> None:
    backlog = submit(settings, "key-a", [f"job a{n}" for n in range(50)])
    (later,) = submit(settings, "key-b", ["job b"])
    assert redis_client.xlen(constants.STREAM_KEY) == 2  # a0 and b; a1..a49 wait in a's backlog
    assert positions(settings, [later]) == [1]
    renderer = FakeRenderer()
    start_worker(renderer)
    every = [*backlog, later]

    def all_done() -> bool:
        return all(redis_client.hget(constants.job_key(i), "status") == "succeeded" for i in every)

    wait_for(all_done, what="all 51 jobs to succeed")
    started = {i: float(redis_client.hget(constants.job_key(i), "started_at") or 0) for i in every}
    before = [i for i in backlog if started[i] < started[later]]
    assert len(before) <= 2
    # Key A's jobs ran in their order, each exactly once.
    assert sorted(backlog, key=started.__getitem__) == backlog
    assert renderer.calls == 51
    assert all(redis_client.hget(constants.job_key(i), "attempt") == "1" for i in every)
    assert redis_client.xlen(constants.STREAM_KEY) == 0
    assert redis_client.get(constants.backlogged_key(constants.STREAM_KEY)) == "0"


def test_positions_and_cancels_of_jobs_in_a_backlog(
    settings: Settings, redis_client: Redis
) -> None:
    a0, a1, a2 = submit(settings, "key-a", ["a0", "a1", "a2"])
    (b0,) = submit(settings, "key-b", ["b0"])
    # The stream holds a0 then b0; a1 and a2 wait behind every entry of the stream.
    assert positions(settings, [a0, b0, a1, a2]) == [0, 1, 2, 3]

    def cancel(job_id: str) -> str:
        return run(settings, lambda queue: queue.cancel(job_id))

    assert cancel(a1) == "canceled"  # it only leaves the backlog
    assert positions(settings, [a0, b0, a1, a2]) == [0, 1, None, 2]
    assert cancel(a0) == "canceled"  # a2 enters the stream, behind b0
    assert positions(settings, [b0, a2]) == [0, 1]
    assert redis_client.xlen(constants.STREAM_KEY) == 2
    assert redis_client.get(constants.backlogged_key(constants.STREAM_KEY)) == "0"
    stats = run(settings, lambda queue: queue.stats())
    assert stats.depth == 2


def test_the_backlog_counts_towards_the_queue_limit(settings: Settings) -> None:
    limited = settings.model_copy(update={"max_backlog": 3})
    submit(limited, "key-a", ["a0", "a1", "a2"])
    with pytest.raises(QueueFullError):
        submit(limited, "key-b", ["b0"])
