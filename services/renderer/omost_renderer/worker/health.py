"""Failures of a worker's background work (heartbeat, cleanup, storage, the queue), made visible.

A worker never lets such a failure pass silently: it logs it, retries with backoff, counts it in
the metrics hash (``errors:<component>``, exported as ``omost_render_worker_errors``) and puts it in
its health key, which the API's ``/ready`` reads. A component is *active* (failing now) until its
next success.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal, cast

from pydantic import BaseModel, Field
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from omost_renderer.job_queue import constants

#: Every failure of Redis itself: unreachable, or answering an error (full: ``OOM``, read-only).
REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, ResponseError)
#: Longest error message kept in a health key.
MAX_MESSAGE_CHARS = 300


@dataclass
class _Problem:
    count: int
    message: str
    at: float
    active: bool


class BackgroundErrors:
    """Thread-safe record of one worker's background failures, by component."""

    def __init__(self) -> None:
        """Start with no failures."""
        self._lock = threading.Lock()
        self._problems: dict[str, _Problem] = {}
        self._unreported: dict[str, int] = {}

    def record(self, component: str, error: BaseException | str) -> None:
        """Note that ``component`` failed with ``error`` (it is active until ``clear``)."""
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        with self._lock:
            problem = self._problems.get(component)
            count = problem.count + 1 if problem else 1
            self._problems[component] = _Problem(count, text[:MAX_MESSAGE_CHARS], time.time(), True)
            self._unreported[component] = self._unreported.get(component, 0) + 1

    def clear(self, component: str) -> None:
        """Note that ``component`` works again (its history stays, no longer active)."""
        with self._lock:
            problem = self._problems.get(component)
            if problem is not None:
                problem.active = False

    def is_active(self, component: str) -> bool:
        """Whether ``component`` is failing now."""
        with self._lock:
            problem = self._problems.get(component)
            return problem is not None and problem.active

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Every component that ever failed: ``{count, message, at, active}`` (health key)."""
        with self._lock:
            return {
                name: {"count": p.count, "message": p.message, "at": p.at, "active": p.active}
                for name, p in self._problems.items()
            }

    def take_unreported(self) -> dict[str, int]:
        """Return the failures not yet counted in Redis and forget them (see ``give_back``)."""
        with self._lock:
            counts, self._unreported = self._unreported, {}
            return counts

    def give_back(self, counts: dict[str, int]) -> None:
        """Keep ``counts`` for the next report (writing them to Redis failed)."""
        with self._lock:
            for name, count in counts.items():
                self._unreported[name] = self._unreported.get(name, 0) + count


def error_counter_field(component: str) -> str:
    """Field of the metrics hash counting a component's failures."""
    return f"errors:{component}"


async def read_worker_health(redis: AsyncRedis) -> list[dict[str, Any]]:
    """Return the health record of every live worker (``name`` added), for ``/ready``.

    Live workers come from the workers set (scored by when their health key expires), never from
    a ``SCAN`` of the keyspace.
    """
    names = cast(list[str], await redis.zrangebyscore(constants.WORKERS_KEY, time.time(), "+inf"))
    if not names:
        return []
    values = cast(
        list[str | None], await redis.mget([constants.worker_health_key(n) for n in names])
    )
    workers: list[dict[str, Any]] = []
    for name, value in zip(names, values, strict=True):
        if value is None:
            continue  # expired between the scan and the read
        try:
            record = json.loads(value)
        except ValueError:
            continue
        if isinstance(record, dict):
            record["name"] = name
            workers.append(record)
    return workers


class WorkerProblem(BaseModel):
    """A background failure a live worker reports as happening now."""

    worker: str = Field(description="Consumer name of the worker.")
    component: str = Field(description="What fails: queue, heartbeat, storage, cleanup, device.")
    message: str = Field(description="The last error.")
    count: int = Field(description="Failures of this component since the worker started.")
    at: float | None = Field(description="Unix time of the last failure.")


class ReadyResponse(BaseModel):
    """``/ready``: the API can serve (Redis answers); workers' failures are reported, not fatal."""

    status: Literal["ready", "degraded"] = Field(
        description="`degraded` when a live worker reports a failing component."
    )
    workers: int = Field(description="Workers with a live health key.")
    problems: list[WorkerProblem] = Field(description="Failures live workers report now.")


def active_problems(workers: list[dict[str, Any]]) -> list[WorkerProblem]:
    """The failures live workers report as happening now, one row per worker and component."""
    rows: list[WorkerProblem] = []
    for worker in workers:
        errors = worker.get("errors") or {}
        if not isinstance(errors, dict):
            continue
        for component, problem in sorted(errors.items()):
            if isinstance(problem, dict) and problem.get("active"):
                rows.append(
                    WorkerProblem(
                        worker=str(worker["name"]),
                        component=str(component),
                        message=str(problem.get("message", "")),
                        count=int(problem.get("count", 0)),
                        at=problem.get("at"),
                    )
                )
    return rows


async def readiness(redis: AsyncRedis) -> ReadyResponse:
    """Read every live worker's health key into the ``/ready`` answer."""
    workers = await read_worker_health(redis)
    problems = active_problems(workers)
    return ReadyResponse(
        status="degraded" if problems else "ready", workers=len(workers), problems=problems
    )
