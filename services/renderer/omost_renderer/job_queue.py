"""The API's side of the job queue (``redis.asyncio``): submit, look up, cancel, follow events."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from omost_renderer import constants, queue_scripts
from omost_renderer.config import Settings
from omost_renderer.errors import QueueFullError
from omost_renderer.jobs import JobRequest
from omost_renderer.worker_queue import StreamReply


@dataclass(frozen=True)
class Submission:
    """The outcome of a submit: the job and whether this call created it."""

    job_id: str
    created: bool


@dataclass(frozen=True)
class JobEvent:
    """One entry of a job's event stream (``id`` is the SSE event id)."""

    id: str
    type: str
    data: str


@dataclass(frozen=True)
class QueueStats:
    """Queue gauges and worker counters for ``/metrics``."""

    depth: int
    pending: int
    dead_letters: int
    workers: int
    counters: dict[str, str]


async def ensure_group(redis: Redis) -> None:
    """Create the stream and its consumer group unless they exist."""
    try:
        await redis.xgroup_create(constants.STREAM_KEY, constants.GROUP_NAME, id="0", mkstream=True)
    except ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


class JobQueue:
    """Queue operations the API needs; every transition is one atomic Lua script."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        """Use ``redis`` (a client with ``decode_responses=True``) under ``settings``' limits."""
        self.redis = redis
        self.settings = settings
        self._submit = redis.register_script(queue_scripts.SUBMIT)
        self._cancel = redis.register_script(queue_scripts.CANCEL)

    async def submit(self, request: JobRequest, idempotency_key: str | None = None) -> Submission:
        """Queue a job, or return the job an earlier call made with the same idempotency key.

        Raises:
            QueueFullError: The backlog (queued plus running jobs) is at its limit.
        """
        job_id = uuid.uuid4().hex
        queued_event = json.dumps({"status": "queued", "attempt": 0})
        result = await self._submit(
            keys=[
                constants.STREAM_KEY,
                constants.job_key(job_id),
                constants.idempotency_key(idempotency_key or ""),
                constants.events_key(job_id),
            ],
            args=[
                job_id,
                self.settings.max_backlog,
                self.settings.idempotency_ttl_s,
                repr(time.time()),
                request.model_dump_json(),
                self.settings.max_attempts,
                "1" if idempotency_key else "0",
                queued_event,
            ],
        )
        outcome, value = result[0], result[1]
        if outcome == "existing":
            return Submission(job_id=value, created=False)
        if outcome == "full":
            raise QueueFullError(
                f"the render queue is full ({value} jobs); retry later",
                retry_after_s=self.settings.retry_after_s,
            )
        return Submission(job_id=job_id, created=True)

    async def get(self, job_id: str) -> dict[str, str] | None:
        """Return the job hash, or ``None`` when there is no such job (or it expired)."""
        fields = cast(dict[str, str], await self.redis.hgetall(constants.job_key(job_id)))
        return fields or None

    async def queue_position(self, entry_id: str) -> int:
        """Return how many queued entries are ahead of ``entry_id`` (0: it is next)."""
        last_delivered = "0-0"
        try:
            groups = await self.redis.xinfo_groups(constants.STREAM_KEY)
        except ResponseError:
            groups = []  # no stream yet (a fresh or emptied Redis): nothing was delivered
        for group in groups:
            if group["name"] == constants.GROUP_NAME:
                last_delivered = group["last-delivered-id"]
        ahead = await self.redis.xrange(
            constants.STREAM_KEY,
            min=f"({last_delivered}",
            max=f"({entry_id}",
            count=self.settings.max_backlog + 1,
        )
        return len(ahead or [])

    async def cancel(self, job_id: str) -> str:
        """Cancel a job: at once when queued, at the next step when running.

        Returns:
            ``missing``, ``canceled``, ``requested``, or the job's final status.
        """
        canceled_event = json.dumps({"status": "canceled"})
        outcome: str = await self._cancel(
            keys=[constants.STREAM_KEY, constants.job_key(job_id), constants.events_key(job_id)],
            args=[repr(time.time()), self.settings.job_ttl_s, canceled_event],
        )
        return outcome

    async def events(self, job_id: str, after: str, block_ms: int) -> list[JobEvent]:
        """Return the job's events after ``after`` (an event id), waiting up to ``block_ms``."""
        key = constants.events_key(job_id)
        answer = cast(StreamReply, await self.redis.xread({key: after}, count=100, block=block_ms))
        events: list[JobEvent] = []
        for _, entries in answer:
            for entry_id, fields in entries:
                events.append(JobEvent(id=entry_id, type=fields["type"], data=fields["data"]))
        return events

    async def stats(self) -> QueueStats:
        """Read the gauges and counters ``/metrics`` exports."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xlen(constants.STREAM_KEY)
            pipe.xlen(constants.DEAD_LETTER_KEY)
            pipe.hgetall(constants.METRICS_KEY)
            depth, dead, counters = await pipe.execute()
        pending = 0
        try:
            summary = await self.redis.xpending(constants.STREAM_KEY, constants.GROUP_NAME)
            pending = int(summary["pending"])
        except ResponseError:
            pending = 0  # no group yet: nothing can be pending
        workers = 0
        async for _ in self.redis.scan_iter(match=f"{constants.WORKER_HEALTH_KEY_PREFIX}*"):
            workers += 1
        return QueueStats(
            depth=int(depth),
            pending=pending,
            dead_letters=int(dead),
            workers=workers,
            counters=counters,
        )
