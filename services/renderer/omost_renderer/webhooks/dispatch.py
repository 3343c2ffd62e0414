"""Delivery of webhooks, by the API processes, from the webhook stream (a consumer group).

Each API process runs one ``WebhookDispatcher`` as a background task. Entries are read with the
group ``omost-render-webhooks``, so each is delivered by one process; an entry left pending by a
process that died is taken over with XAUTOCLAIM after ``webhook_reclaim_after_s``, so a crash
loses no delivery (a delivery may then be sent twice: receivers dedupe on ``webhook-id``, as the
Standard Webhooks scheme says). A failed attempt (no answer, or a status other than 2xx) moves the
entry to a sorted set scored by its next time, ``webhook_retry_base_s`` doubled per attempt (at
most ``MAX_RETRY_DELAY_S``), for ``webhook_retry_for_s`` after the first attempt; then the entry
is dropped, logged and counted. Delivery never touches the job: a receiver that is down changes
nothing but the webhook's own entries.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import cast

import anyio
import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from omost_renderer.config import Settings
from omost_renderer.job_queue import constants
from omost_renderer.job_queue.jobs import job_view
from omost_renderer.job_queue.worker_queue import StreamReply
from omost_renderer.webhooks.events import (
    ANONYMOUS_KEY,
    SigningKeys,
    URLPolicy,
    WebhookURLError,
    sign,
)

logger = logging.getLogger(__name__)

#: Longest wait between two attempts of one delivery.
MAX_RETRY_DELAY_S = 3600.0
#: Entries one process delivers at once.
BATCH = 16
#: Events after which the job has ended: their payload carries the whole job.
_FINAL_EVENTS = frozenset({"completed", "failed", "canceled"})

#: KEYS: retry set, webhook stream. ARGV: now, most entries to move.
#: Moves the deliveries whose retry time has come back to the stream. Returns how many.
_PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  local fields = cjson.decode(member)
  local args = {}
  for name, value in pairs(fields) do
    table.insert(args, name)
    table.insert(args, value)
  end
  redis.call('XADD', KEYS[2], '*', unpack(args))
  redis.call('ZREM', KEYS[1], member)
end
return #due
"""

Entries = list[tuple[str, dict[str, str]]]


async def ensure_webhook_group(redis: Redis) -> None:
    """Create the webhook stream and its consumer group unless they exist."""
    try:
        await redis.xgroup_create(
            constants.WEBHOOK_STREAM_KEY, constants.WEBHOOK_GROUP_NAME, id="0", mkstream=True
        )
    except ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


def webhook_consumer_name() -> str:
    """A consumer name unique to this process: ``<host>-<pid>-<random>``."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def retry_delay_s(attempt: int, base_s: float) -> float:
    """Seconds before the attempt after ``attempt`` (1-based): ``base_s`` doubled per attempt."""
    return float(min(MAX_RETRY_DELAY_S, base_s * 2 ** min(attempt - 1, 32)))


class WebhookDispatcher:
    """Delivers the webhook stream's entries as one consumer of its group."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        http: httpx.AsyncClient,
        *,
        consumer: str,
        policy: URLPolicy | None = None,
    ) -> None:
        """Deliver with ``http`` as consumer ``consumer``; ``policy`` re-checks each URL."""
        self.redis = redis
        self.settings = settings
        self.http = http
        self.consumer = consumer
        self.policy = policy or URLPolicy.parse(settings.webhook_allowed_hosts)
        self.keys = SigningKeys.from_settings(settings.webhook_secret, settings.webhook_secrets)
        self._promote = redis.register_script(_PROMOTE)
        self._stopped = False

    def stop(self) -> None:
        """Make :meth:`run` return after the batch it is delivering."""
        self._stopped = True

    async def run(self) -> None:
        """Deliver until stopped or cancelled; Redis being away pauses delivery (one log line)."""
        failing = False
        while not self._stopped:
            try:
                if failing:  # Redis may have come back empty: make the group again
                    await ensure_webhook_group(self.redis)
                await self.run_once(self.settings.block_ms)
                if failing:
                    logger.info("webhook delivery resumed")
                failing = False
            except RedisError as error:
                task = asyncio.current_task()
                if self._stopped or (task is not None and task.cancelling()):
                    # redis-py may turn a cancellation inside a blocking read into an error
                    raise asyncio.CancelledError from error
                if not failing:
                    logger.warning("webhook delivery paused, Redis: %s", error)
                failing = True
                await anyio.sleep(1.0)

    async def run_once(self, block_ms: int | None) -> int:
        """Move due retries back, take over abandoned entries, deliver new ones.

        Args:
            block_ms: Longest wait for a new entry (``None``: none).

        Returns:
            How many entries were attempted.
        """
        await self._promote(
            keys=[constants.WEBHOOK_RETRY_KEY, constants.WEBHOOK_STREAM_KEY],
            args=[repr(time.time()), BATCH],
        )
        entries = await self._abandoned()
        if not entries:
            answer = cast(
                StreamReply,
                await self.redis.xreadgroup(
                    constants.WEBHOOK_GROUP_NAME,
                    self.consumer,
                    {constants.WEBHOOK_STREAM_KEY: ">"},
                    count=BATCH,
                    block=block_ms,
                ),
            )
            for _, read in answer or []:
                entries.extend(read)
        # One slow receiver holds its batch for at most `webhook_timeout_s`; the first failure
        # of Redis ends the batch (its entries stay pending, and are taken over later).
        await asyncio.gather(*(self._deliver(entry_id, fields) for entry_id, fields in entries))
        return len(entries)

    async def _abandoned(self) -> Entries:
        answer = await self.redis.xautoclaim(
            constants.WEBHOOK_STREAM_KEY,
            constants.WEBHOOK_GROUP_NAME,
            self.consumer,
            min_idle_time=int(self.settings.webhook_reclaim_after_s * 1000),
            start_id="0-0",
            count=BATCH,
        )
        return [(entry_id, fields) for entry_id, fields in cast(Entries, answer[1]) if fields]

    async def _deliver(self, entry_id: str, fields: dict[str, str]) -> None:
        message_id = fields.get("id") or f"msg_{entry_id}"
        job_id = fields.get("job", "")
        key = self.keys.for_key(fields.get("key") or ANONYMOUS_KEY)
        if key is None:
            await self._drop(entry_id, job_id, "no signing secret for its API key")
            return
        try:
            await self.policy.check(fields["url"])
        except (KeyError, WebhookURLError) as error:
            await self._drop(entry_id, job_id, f"its URL is refused now: {error}")
            return
        body = json.dumps(await self._payload(entry_id, fields), separators=(",", ":")).encode()
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(key, message_id, timestamp, body),
        }
        try:
            response = await self.http.post(fields["url"], content=body, headers=headers)
            failure = None if response.is_success else f"answered {response.status_code}"
        except httpx.HTTPError as error:
            failure = f"{type(error).__name__}: {error}"
        if failure is None:
            await self._done(entry_id, "delivered")
            return
        await self._retry_or_drop(entry_id, {**fields, "id": message_id}, failure)

    async def _payload(self, entry_id: str, fields: Mapping[str, str]) -> dict[str, object]:
        """``{type, timestamp, data}``, the Standard Webhooks shape; an end carries the job."""
        event = fields.get("event", "")
        milliseconds = int(fields.get("at") or entry_id.partition("-")[0])
        job_id = fields.get("job", "")
        data: dict[str, object] = {"id": job_id, **json.loads(fields["data"])}
        if event in _FINAL_EVENTS:
            job = cast(dict[str, str], await self.redis.hgetall(constants.job_key(job_id)))
            if job:
                base_path = f"/v1/renders/{job['id']}"
                data["job"] = job_view(job, base_path=base_path).model_dump(mode="json")
        stamp = datetime.fromtimestamp(milliseconds / 1000, tz=UTC)
        return {
            "type": f"render.{event}",
            "timestamp": stamp.isoformat().replace("+00:00", "Z"),
            "data": data,
        }

    async def _retry_or_drop(self, entry_id: str, fields: dict[str, str], failure: str) -> None:
        now = time.time()
        attempt = int(fields.get("attempt") or "1")
        first_at = float(fields.get("first_at") or now)
        delay = retry_delay_s(attempt, self.settings.webhook_retry_base_s)
        if now + delay - first_at > self.settings.webhook_retry_for_s:
            await self._drop(entry_id, fields.get("job", ""), f"{attempt} attempts; last {failure}")
            return
        logger.info(
            "webhook %s of job %s: attempt %d %s; next in %.1fs",
            fields.get("event"),
            fields.get("job"),
            attempt,
            failure,
            delay,
        )
        again = {
            **fields,
            "attempt": str(attempt + 1),
            "first_at": repr(first_at),
            "at": fields.get("at") or entry_id.partition("-")[0],
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(constants.WEBHOOK_RETRY_KEY, {json.dumps(again, sort_keys=True): now + delay})
            pipe.xack(constants.WEBHOOK_STREAM_KEY, constants.WEBHOOK_GROUP_NAME, entry_id)
            pipe.xdel(constants.WEBHOOK_STREAM_KEY, entry_id)
            pipe.hincrby(constants.METRICS_KEY, "webhooks:retried", 1)
            await pipe.execute()

    async def _drop(self, entry_id: str, job_id: str, why: str) -> None:
        logger.warning("webhook of job %s dropped: %s", job_id, why)
        await self._done(entry_id, "dropped")

    async def _done(self, entry_id: str, outcome: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(constants.WEBHOOK_STREAM_KEY, constants.WEBHOOK_GROUP_NAME, entry_id)
            pipe.xdel(constants.WEBHOOK_STREAM_KEY, entry_id)
            pipe.hincrby(constants.METRICS_KEY, f"webhooks:{outcome}", 1)
            await pipe.execute()
