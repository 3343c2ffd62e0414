"""The API's side of the job queue (``redis.asyncio``): submit, look up, cancel, follow events."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError
from redis.typing import KeyT, StreamIdT

from omost_renderer.config import Settings
from omost_renderer.edits.plans import edit_event
from omost_renderer.errors import ConflictError, IdempotencyKeyReusedError, QueueFullError
from omost_renderer.job_queue import constants
from omost_renderer.job_queue import scripts as queue_scripts
from omost_renderer.job_queue.jobs import JobNotes, JobRequest
from omost_renderer.job_queue.worker_queue import StreamReply

# A submit whose idempotency key keeps being remapped under it (each remap needs a job to
# expire) gives up after this many lookups; in practice the second call settles it.
_MAX_LOOKUPS = 4
#: The job hash field naming the idempotency key (as submitted) that maps to the job.
_IDEMPOTENCY_FIELD = "idempotency_key"
#: KEYS: idempotency key. ARGV: job id. Deletes the key only while it maps to that job.
_FORGET = """
local stored = redis.call('GET', KEYS[1])
if stored and string.match(stored, '^(%S+)') == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Submission:
    """The outcome of a submit: the job and whether this call created it."""

    job_id: str
    created: bool


@dataclass(frozen=True)
class JobEvent:
    """One entry of a job's event streams.

    Attributes:
        id: Entry id; the SSE event id of a durable event.
        type: SSE event type (``status``, ``progress``).
        data: The event's JSON.
        transient: A step preview: sent without an SSE id and never replayed on resume.
    """

    id: str
    type: str
    data: str
    transient: bool = False


@dataclass(frozen=True)
class QueueStats:
    """Queue gauges and worker counters for ``/metrics``."""

    depth: int
    pending: int
    dead_letters: int
    workers: int
    counters: dict[str, str]


async def ensure_group(redis: Redis, stream: str = constants.STREAM_KEY) -> None:
    """Create the stream and its consumer group unless they exist."""
    try:
        await redis.xgroup_create(stream, constants.GROUP_NAME, id="0", mkstream=True)
    except ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


def request_digest(request: JobRequest) -> str:
    """Return the digest an idempotency key remembers its request by (SHA-256 of its JSON)."""
    return hashlib.sha256(request.model_dump_json().encode()).hexdigest()


class JobQueue:
    """Queue operations the API needs; every transition is one atomic Lua script."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        """Use ``redis`` (a client with ``decode_responses=True``) under ``settings``' limits."""
        self.redis = redis
        self.settings = settings
        self._submit = redis.register_script(queue_scripts.SUBMIT)
        self._cancel = redis.register_script(queue_scripts.CANCEL)
        self._position = redis.register_script(queue_scripts.POSITION)
        self._forget = redis.register_script(_FORGET)
        # Streams whose consumer group this process has made sure of (one per model).
        self._streams: set[str] = {constants.STREAM_KEY}

    async def submit(
        self,
        request: JobRequest,
        idempotency_key: str | None = None,
        notes: JobNotes | None = None,
        fields: Mapping[str, str] | None = None,
        digest: str | None = None,
        job_id: str | None = None,
    ) -> Submission:
        """Queue a job, or return the job an earlier call made with the same idempotency key.

        An idempotency key remembers a digest of its request, as Stripe's do: the same key with
        another request is refused. A key whose job has expired is free again.

        Args:
            request: What to render.
            idempotency_key: The client's ``Idempotency-Key``, if it sent one.
            notes: Corrections and warnings of parsing the request's code, kept with the job.
            fields: More fields of the job hash (its webhook, its API key's name).
            digest: What the idempotency key remembers the request by, when not the digest of
                ``request`` (the Images API's, whose canvas the LLM composes anew each time).
            job_id: The new job's id, when the caller chose it (per-key quotas count it before
                it is queued); a fresh one otherwise.

        Raises:
            QueueFullError: The backlog (queued plus running jobs) is at its limit.
            IdempotencyKeyReusedError: The key was used with a different request.
            ConflictError: The key kept being remapped by concurrent submits (expired jobs).
        """
        job_id = job_id or uuid.uuid4().hex
        believed = ""
        await self._ensure_stream(request.model)
        for _ in range(_MAX_LOOKUPS):
            outcome, value = await self._submit_once(
                job_id,
                request,
                idempotency_key,
                believed,
                notes or JobNotes(),
                [item for pair in self._job_fields(fields, idempotency_key) for item in pair],
                digest or request_digest(request),
            )
            if outcome != "lookup":
                break
            believed = value
        if outcome == "created":
            return Submission(job_id=job_id, created=True)
        if outcome == "existing":
            return Submission(job_id=value, created=False)
        if outcome == "reused":
            raise IdempotencyKeyReusedError(
                f"Idempotency-Key {idempotency_key!r} was already used with a different request"
                f" (job {value}); use a new key for a new request",
                param="Idempotency-Key",
            )
        if outcome == "full":
            raise QueueFullError(
                f"the render queue is full ({value} jobs); retry later",
                retry_after_s=self.settings.retry_after_s,
            )
        raise ConflictError(
            f"Idempotency-Key {idempotency_key!r} is being remapped concurrently; retry",
            code="idempotency_conflict",
        )

    async def _submit_once(
        self,
        job_id: str,
        request: JobRequest,
        idempotency_key: str | None,
        believed: str,
        notes: JobNotes,
        pairs: list[str],
        digest: str,
    ) -> tuple[str, str]:
        queued: dict[str, object] = {"status": "queued", "attempt": 0}
        if request.edit is not None:
            # An edit's first event says how it renders and where its repaint mask is.
            queued["edit"] = edit_event(request.edit, job_id)
        queued_event = json.dumps(queued)
        result = await self._submit(
            keys=[
                constants.stream_key(request.model),
                constants.job_key(job_id),
                constants.idempotency_key(idempotency_key or ""),
                constants.events_key(job_id),
                constants.job_key(believed or job_id),
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
                digest,
                believed,
                notes.model_dump_json() if notes.corrections or notes.warnings else "",
                *pairs,
            ],
        )
        return str(result[0]), str(result[1])

    async def _ensure_stream(self, model: str | None) -> None:
        """Make sure a model's stream and group exist, and list it for ``stats``."""
        stream = constants.stream_key(model)
        if stream in self._streams:
            return
        await ensure_group(self.redis, stream)
        if model is not None:
            await self.redis.sadd(constants.MODELS_KEY, model)
        self._streams.add(stream)

    async def _job_model(self, job_id: str) -> str | None:
        """The model of a job's stream, read from its request (``None`` once it is gone)."""
        raw = await self.redis.hget(constants.job_key(job_id), "request")
        if not raw:
            return None
        model = json.loads(raw).get("model")
        return model if isinstance(model, str) else None

    @staticmethod
    def _job_fields(
        fields: Mapping[str, str] | None, idempotency_key: str | None
    ) -> list[tuple[str, str]]:
        pairs = list((fields or {}).items())
        if idempotency_key:  # so that the key can be forgotten if its client leaves
            pairs.append((_IDEMPOTENCY_FIELD, idempotency_key))
        return pairs

    async def forget_idempotency_key(self, job_id: str) -> None:
        """Free the idempotency key of a job, unless it maps to another job by now.

        A client that left before its answer never learnt of the job; its retry with the same
        key must start anew rather than find the job canceled when the client left.
        """
        key = await self.redis.hget(constants.job_key(job_id), _IDEMPOTENCY_FIELD)
        if key:
            await self._forget(keys=[constants.idempotency_key(str(key))], args=[job_id])

    async def get(self, job_id: str) -> dict[str, str] | None:
        """Return the job hash, or ``None`` when there is no such job (or it expired)."""
        fields = cast(dict[str, str], await self.redis.hgetall(constants.job_key(job_id)))
        return fields or None

    async def queue_position(self, job_id: str) -> int | None:
        """Return how many queued entries are ahead of the job (0: it is next).

        One script of O(log n) work, whatever the backlog: the job's sequence number minus that
        of the oldest entry not yet delivered, minus the canceled entries in between. A job still
        in its API key's backlog (fair scheduling) counts the stream's undelivered entries plus
        its key's older jobs: a lower bound, as other keys' later jobs may enter between them.

        Returns:
            The position, or ``None`` when the job is not queued.
        """
        model = await self._job_model(job_id)
        position = int(
            await self._position(
                keys=[
                    constants.stream_key(model),
                    constants.job_key(job_id),
                    constants.canceled_key(model),
                ],
                args=[constants.GROUP_NAME, job_id],
            )
        )
        return position if position >= 0 else None

    async def cancel(self, job_id: str) -> str:
        """Cancel a job: at once when queued, at the next step when running.

        A canceled job is kept ``canceled_ttl_s``, without its request.

        Returns:
            ``missing``, ``canceled``, ``requested``, or the job's final status.
        """
        canceled_event = json.dumps({"status": "canceled"})
        model = await self._job_model(job_id)
        outcome: str = await self._cancel(
            keys=[
                constants.stream_key(model),
                constants.job_key(job_id),
                constants.events_key(job_id),
                constants.canceled_key(model),
            ],
            args=[
                repr(time.time()),
                self.settings.canceled_ttl_s,
                canceled_event,
                constants.GROUP_NAME,
                job_id,
            ],
        )
        return outcome

    async def events(
        self,
        job_id: str,
        after: str,
        block_ms: int | None,
        *,
        previews_after: str | None = None,
    ) -> tuple[list[JobEvent], str | None]:
        """Return the job's events after ``after`` (an event id), waiting up to ``block_ms``.

        Args:
            job_id: The job.
            after: Id of the last durable event seen (``0-0`` for all).
            block_ms: Longest wait for a first event; ``None``: answer at once.
            previews_after: Id of the last preview seen (``0-0``: the latest kept), or ``None``
                for no previews.

        Returns:
            The previews (at most the latest few), then the durable events, so a preview never
            comes after the final event; and the id of the last preview read
            (``previews_after`` when none came).
        """
        streams: dict[KeyT, StreamIdT] = {constants.events_key(job_id): after}
        if previews_after is not None:
            streams[constants.previews_key(job_id)] = previews_after
        answer = cast(StreamReply, await self.redis.xread(streams, count=100, block=block_ms))
        durable: list[JobEvent] = []
        previews: list[JobEvent] = []
        for stream, entries in answer or []:
            transient = stream == constants.previews_key(job_id)
            for entry_id, fields in entries:
                event = JobEvent(entry_id, fields["type"], fields["data"], transient=transient)
                (previews if transient else durable).append(event)
                if transient:
                    previews_after = entry_id
        return previews + durable, previews_after

    async def stats(self) -> QueueStats:
        """Read the gauges and counters ``/metrics`` exports, in O(1) or O(log n) commands."""
        now = time.time()
        models = cast(set[str], await self.redis.smembers(constants.MODELS_KEY))
        streams = [constants.STREAM_KEY, *(constants.stream_key(m) for m in sorted(models))]
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream in streams:
                pipe.xlen(stream)
                pipe.get(constants.backlogged_key(stream))  # waiting in the keys' backlogs
            pipe.xlen(constants.DEAD_LETTER_KEY)
            pipe.hgetall(constants.METRICS_KEY)
            # Workers that died without a clean exit leave a member whose time has passed.
            pipe.zremrangebyscore(constants.WORKERS_KEY, "-inf", now)
            pipe.zcard(constants.WORKERS_KEY)
            *lengths, dead, counters, _, workers = await pipe.execute()
        depth = sum(int(length or 0) for length in lengths)
        pending = 0
        for stream in streams:
            try:
                summary = await self.redis.xpending(stream, constants.GROUP_NAME)
                pending += int(summary["pending"])
            except ResponseError:
                pass  # no group yet: nothing can be pending
        return QueueStats(
            depth=int(depth),
            pending=pending,
            dead_letters=int(dead),
            workers=int(workers),
            counters=counters,
        )
