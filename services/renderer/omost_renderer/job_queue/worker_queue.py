"""The worker's side of the job queue (synchronous ``redis``): claim, start, fence, finish."""

from __future__ import annotations

import bisect
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from redis import Redis
from redis.exceptions import ResponseError

from omost_renderer.config import Settings
from omost_renderer.job_queue import constants
from omost_renderer.job_queue import scripts as queue_scripts
from omost_renderer.job_queue.jobs import JobStatus

#: A stream read as redis-py answers it: ``[(stream, [(entry id, fields), ...]), ...]``.
StreamReply = list[tuple[str, list[tuple[str, dict[str, str]]]]]


@dataclass(frozen=True)
class Claim:
    """A stream entry this worker now owns."""

    entry_id: str
    job_id: str


@dataclass(frozen=True)
class StartedJob:
    """A job this worker runs, under one attempt number (its fencing token)."""

    claim: Claim
    attempt: int
    enqueued_at: float
    request_json: str


def ensure_group(redis: Redis, stream: str = constants.STREAM_KEY) -> None:
    """Create the stream and its consumer group unless they exist."""
    try:
        redis.xgroup_create(stream, constants.GROUP_NAME, id="0", mkstream=True)
    except ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


class WorkerQueue:
    """Queue operations of one worker (one consumer of the group of its model's stream)."""

    def __init__(self, redis: Redis, settings: Settings, consumer: str) -> None:
        """Use ``redis`` (``decode_responses=True``) as consumer ``consumer``.

        The worker claims only the jobs of the model it serves (``settings.model``): they are
        the entries of that model's stream.
        """
        self.redis = redis
        self.settings = settings
        self.consumer = consumer
        self.stream = constants.stream_key(settings.model)
        self._start = redis.register_script(queue_scripts.START)
        self._progress = redis.register_script(queue_scripts.PROGRESS)
        self._heartbeat = redis.register_script(queue_scripts.HEARTBEAT)
        self._finish = redis.register_script(queue_scripts.FINISH)
        self._requeue = redis.register_script(queue_scripts.REQUEUE)

    def reclaim(self) -> Claim | None:
        """Take over one entry idle longer than the reclaim time (a dead or stopping worker's).

        The whole pending list is scanned with XAUTOCLAIM's cursor: one call looks at no more
        than ten entries per entry it may claim, so a dead worker's entry behind ten live ones
        would never be found by a scan that always restarted at the head.
        """
        min_idle_ms = int(self.settings.reclaim_after_s * 1000)
        cursor = "0-0"
        while True:
            answer = self.redis.xautoclaim(
                self.stream,
                constants.GROUP_NAME,
                self.consumer,
                min_idle_time=min_idle_ms,
                start_id=cursor,
                count=1,
            )
            # XAUTOCLAIM answers [next start, claimed entries, deleted ids]; deleted ids (entries
            # of jobs canceled while queued) are dropped from the pending list by Redis itself.
            for entry_id, fields in answer[1]:
                if fields:
                    return Claim(entry_id=entry_id, job_id=fields["job"])
                self.redis.xack(self.stream, constants.GROUP_NAME, entry_id)
            cursor = str(answer[0])
            if cursor == "0-0":
                return None

    def hand_back(self, claim: Claim) -> None:
        """Give an entry this worker read but will not start to the next worker that reclaims.

        The entry stays in the pending list (its job is still queued, in its place); marking it
        idle for longer than the reclaim time lets any worker's next reclaim take it at once.
        """
        idle_ms = int(self.settings.reclaim_after_s * 1000) + 1000
        self.redis.xclaim(
            self.stream,
            constants.GROUP_NAME,
            self.consumer,
            0,
            [claim.entry_id],
            idle=idle_ms,
            justid=True,
        )

    def read_new(self, block_ms: int) -> Claim | None:
        """Read the next never-delivered entry, waiting up to ``block_ms``."""
        claims = self.read_entries(1, block_ms)
        return claims[0] if claims else None

    def read_entries(self, count: int, block_ms: int | None) -> list[Claim]:
        """Read up to ``count`` never-delivered entries, oldest first.

        Args:
            count: Most entries to take (a worker's free batch slots, at least 1).
            block_ms: How long to wait when there is none; ``None`` answers at once (a worker
                that is rendering never waits for more work).
        """
        answer = cast(
            StreamReply,
            self.redis.xreadgroup(
                constants.GROUP_NAME,
                self.consumer,
                {self.stream: ">"},
                count=max(1, count),
                block=block_ms,
            ),
        )
        return [
            Claim(entry_id=entry_id, job_id=fields["job"])
            for _, entries in answer or []
            for entry_id, fields in entries
        ]

    def start(self, claim: Claim) -> StartedJob | None:
        """Start the next attempt of the claimed job; ``None`` if there is nothing to run."""
        key = constants.job_key(claim.job_id)
        outcome = self._start(
            keys=[
                self.stream,
                key,
                constants.DEAD_LETTER_KEY,
                constants.events_key(claim.job_id),
                constants.METRICS_KEY,
            ],
            args=[
                constants.GROUP_NAME,
                claim.entry_id,
                self.consumer,
                repr(time.time()),
                self.settings.job_ttl_s,
                claim.job_id,
            ],
        )
        if outcome[0] != "run":
            return None
        enqueued_at = float(outcome[2]) if outcome[2] else time.time()
        return StartedJob(claim, int(outcome[1]), enqueued_at, str(outcome[3]))

    def progress(self, job: StartedJob, step: int, total: int, preview_b64: str | None) -> str:
        """Record progress; returns ``ok``, ``cancel`` (stop now) or ``fenced`` (not ours)."""
        event: dict[str, object] = {"step": step, "total": total, "attempt": job.attempt}
        # The preview goes to the job's capped, short-lived preview stream, never into the
        # events kept with the job.
        preview = json.dumps({**event, "preview": preview_b64}) if preview_b64 is not None else ""
        job_id = job.claim.job_id
        outcome: str = self._progress(
            keys=[
                constants.job_key(job_id),
                constants.events_key(job_id),
                constants.previews_key(job_id),
            ],
            args=[job.attempt, step, total, json.dumps(event), preview, constants.PREVIEW_TTL_S],
        )
        return outcome

    def heartbeat(self, job: StartedJob) -> bool:
        """Reset the idle time of the job's entry; ``False`` when a newer attempt owns it."""
        owned = self._heartbeat(
            keys=[self.stream, constants.job_key(job.claim.job_id)],
            args=[constants.GROUP_NAME, self.consumer, job.claim.entry_id, job.attempt],
        )
        return bool(owned)

    def finish(
        self,
        job: StartedJob,
        status: JobStatus,
        fields: dict[str, str],
        *,
        dead_letter: bool = False,
    ) -> bool:
        """Record the final status of the job; ``False`` when fenced out (nothing written)."""
        event: dict[str, object] = {"status": str(status), "attempt": job.attempt}
        if "error_code" in fields:
            event["error"] = {"code": fields["error_code"], "message": fields["error_message"]}
        pairs = [item for pair in fields.items() for item in pair]
        done = self._finish(
            keys=[
                self.stream,
                constants.job_key(job.claim.job_id),
                constants.events_key(job.claim.job_id),
                constants.DEAD_LETTER_KEY,
            ],
            args=[
                constants.GROUP_NAME,
                job.claim.entry_id,
                job.attempt,
                str(status),
                repr(time.time()),
                self.settings.job_ttl_s,
                json.dumps(event),
                "1" if dead_letter else "0",
                job.claim.job_id,
                *pairs,
            ],
        )
        return bool(done)

    def requeue(self, job: StartedJob, *, refund: bool, error_code: str, message: str) -> bool:
        """Put the job back in the queue (a retry, or a release on shutdown when ``refund``)."""
        attempt = job.attempt - 1 if refund else job.attempt
        event = json.dumps({"status": "queued", "attempt": attempt})
        entry = self._requeue(
            keys=[
                self.stream,
                constants.job_key(job.claim.job_id),
                constants.events_key(job.claim.job_id),
            ],
            args=[
                constants.GROUP_NAME,
                job.claim.entry_id,
                job.attempt,
                repr(time.time()),
                "1" if refund else "0",
                event,
                job.claim.job_id,
                error_code,
                message,
            ],
        )
        return bool(entry)

    def count_device_release(self, job: StartedJob) -> int:
        """Count one more release of the job for a poisoned device; return the count so far."""
        return int(self.redis.hincrby(constants.job_key(job.claim.job_id), "device_releases", 1))

    def take_cleanup_turn(self) -> bool:
        """Whether this worker runs the results cleanup now (one worker per cleanup interval)."""
        ttl_ms = max(1, int(self.settings.cleanup_interval_s * 1000))
        return bool(self.redis.set(constants.CLEANUP_LOCK_KEY, self.consumer, nx=True, px=ttl_ms))

    def give_up_cleanup_turn(self) -> None:
        """Let the next worker (or this one, after its backoff) retry a cleanup that failed."""
        if self.redis.get(constants.CLEANUP_LOCK_KEY) == self.consumer:
            self.redis.delete(constants.CLEANUP_LOCK_KEY)

    def add_counters(self, counts: Mapping[str, int]) -> None:
        """Add ``counts`` (metrics hash field to increment) to the metrics hash, in one trip."""
        if not counts:
            return
        with self.redis.pipeline(transaction=False) as pipe:
            for name, count in counts.items():
                pipe.hincrby(constants.METRICS_KEY, name, count)
            pipe.execute()

    def beat_health(self, info: Mapping[str, object]) -> None:
        """Refresh this worker's health key (it expires after a few missed heartbeats)."""
        ttl = max(1, int(self.settings.heartbeat_interval_s * constants.HEALTH_TTL_HEARTBEATS + 1))
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(constants.worker_health_key(self.consumer), json.dumps(info), ex=ttl)
            # ``/metrics`` counts live workers from this set in O(log n), without a SCAN.
            pipe.zadd(constants.WORKERS_KEY, {self.consumer: time.time() + ttl})
            pipe.execute()

    def clear_health(self) -> None:
        """Remove this worker's health key on a clean exit."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(constants.worker_health_key(self.consumer))
            pipe.zrem(constants.WORKERS_KEY, self.consumer)
            pipe.execute()

    def observe(self, name: str, buckets: tuple[float, ...], value: float) -> None:
        """Add ``value`` to the histogram ``name`` kept in the metrics hash."""
        index = bisect.bisect_left(buckets, value)
        bucket = repr(buckets[index]) if index < len(buckets) else "+Inf"
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(constants.METRICS_KEY, f"{name}:bucket:{bucket}", 1)
            pipe.hincrby(constants.METRICS_KEY, f"{name}:count", 1)
            pipe.hincrbyfloat(constants.METRICS_KEY, f"{name}:sum", value)
            pipe.execute()
