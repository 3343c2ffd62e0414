"""Per-key quotas of the renderer API, kept in Redis so every API replica shares them.

Three limits, each checked and counted by one Lua script so concurrent requests on any replica
cannot overshoot:

- requests a minute: a counter per key and minute (fixed one-minute windows of Unix time);
- render jobs queued or running at once: a sorted set of the key's live job ids, pruned at each
  admission of the ids whose job has ended (or never appeared within ``_GRACE_S``);
- rendered megapixel-steps a UTC day: a counter of ``RenderParams.pixel_steps()`` per key and
  day, charged when a job is admitted (a canceled job is not refunded: its GPU time is spent).

A job refused by a limit is not enqueued; one admitted but then not enqueued (queue full, or an
``Idempotency-Key`` answering with an earlier job) is released again. Quotas apply to callers
with a key; an open service (no keys) has none.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass

from omost_schema.rate_limits import LimitState
from redis.asyncio import Redis

from omost_renderer.config import Settings
from omost_renderer.errors import RateLimitError
from omost_renderer.job_queue import constants

# An admitted job id whose job hash has not appeared after this long was never enqueued (the
# API process died between admission and submit): it stops counting.
_GRACE_S = 60
_DAY_S = 24 * 3600
_MEGA = 1_000_000

#: KEYS: the key's request counter of this minute, the metrics hash. ARGV: limit, ttl, name.
#: Returns {1, used} (counted) or {0, used} (over the limit, not counted).
_REQUESTS = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= tonumber(ARGV[1]) then
  redis.call('HINCRBY', KEYS[2], 'key_refused:' .. ARGV[3] .. ':requests', 1)
  return {0, used}
end
used = redis.call('INCR', KEYS[1])
if used == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
redis.call('HINCRBY', KEYS[2], 'key_requests:' .. ARGV[3], 1)
return {1, used}
"""

#: KEYS: the key's live jobs (sorted set), its budget counter of today, the metrics hash.
#: ARGV: job id, now, jobs limit (0: none), budget limit in pixel-steps (0: none), cost,
#: budget ttl, grace seconds, job hash key prefix, jobs set ttl, key name.
#: Returns {'ok' | 'jobs' | 'budget', live jobs, pixel-steps used today}.
_ADMIT = """
local now = tonumber(ARGV[2])
local live = 0
if tonumber(ARGV[3]) > 0 then
  local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  for i = 1, #members, 2 do
    local status = redis.call('HGET', ARGV[8] .. members[i], 'status')
    local lost = (not status) and tonumber(members[i + 1]) < now - tonumber(ARGV[7])
    if lost or status == 'succeeded' or status == 'failed' or status == 'canceled' then
      redis.call('ZREM', KEYS[1], members[i])
    end
  end
  live = redis.call('ZCARD', KEYS[1])
  if live >= tonumber(ARGV[3]) then
    redis.call('HINCRBY', KEYS[3], 'key_refused:' .. ARGV[10] .. ':jobs', 1)
    return {'jobs', live, 0}
  end
end
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[4]) > 0 and used + tonumber(ARGV[5]) > tonumber(ARGV[4]) then
  redis.call('HINCRBY', KEYS[3], 'key_refused:' .. ARGV[10] .. ':budget', 1)
  return {'budget', live, used}
end
if tonumber(ARGV[3]) > 0 then
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[9])
  live = live + 1
end
used = redis.call('INCRBY', KEYS[2], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[6])
redis.call('HINCRBY', KEYS[3], 'key_pixel_steps:' .. ARGV[10], ARGV[5])
return {'ok', live, used}
"""


@dataclass(frozen=True)
class EffectiveLimits:
    """One key's limits: the defaults with its ``key_limits`` overrides (0: no limit)."""

    requests_per_minute: int
    jobs: int
    daily_pixel_steps: int


def limits_for(settings: Settings, name: str) -> EffectiveLimits:
    """Return the limits of the key named ``name``."""
    override = settings.key_limits.get(name)
    rpm = settings.requests_per_minute
    jobs = settings.jobs_per_key
    budget = settings.daily_megapixel_steps
    if override is not None:
        rpm = override.requests_per_minute if override.requests_per_minute is not None else rpm
        jobs = override.jobs if override.jobs is not None else jobs
        if override.daily_megapixel_steps is not None:
            budget = override.daily_megapixel_steps
    return EffectiveLimits(rpm, jobs, round(budget * _MEGA))


def _utc_day(now: float) -> tuple[str, float]:
    """Today's UTC date and the seconds until the next UTC midnight."""
    day = dt.datetime.fromtimestamp(now, tz=dt.UTC)
    return day.strftime("%Y-%m-%d"), _DAY_S - (now % _DAY_S)


def _megapixel_steps(pixel_steps: float) -> int:
    return math.floor(pixel_steps / _MEGA)


class KeyQuotas:
    """Check and count the per-key limits in Redis.

    Args:
        redis: A client with ``decode_responses=True``.
        settings: The limits (``requests_per_minute``, ``jobs_per_key``,
            ``daily_megapixel_steps``, ``key_limits``) and ``retry_after_s``.
    """

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self._requests = redis.register_script(_REQUESTS)
        self._admit = redis.register_script(_ADMIT)

    async def count_request(self, name: str) -> list[LimitState]:
        """Count one request of the key ``name`` against its requests a minute.

        Returns:
            Where the key stands (for the ``x-ratelimit-*-requests`` headers); empty when the
            key has no such limit.

        Raises:
            RateLimitError: The key has used its requests of this minute.
        """
        limit = limits_for(self.settings, name).requests_per_minute
        if limit == 0:
            return []
        now = time.time()
        minute = int(now // 60)
        reset = 60 - (now % 60)
        counted, used = await self._requests(
            keys=[constants.quota_requests_key(name, minute), constants.METRICS_KEY],
            args=[limit, 61, name],
        )
        state = LimitState("requests", limit, limit - int(used), reset)
        if not int(counted):
            raise RateLimitError(
                f"the API key {name!r} made {limit} requests this minute, its limit",
                retry_after_s=max(1, math.ceil(reset)),
                headers=state.headers(),
            )
        return [state]

    async def admit_job(self, name: str, job_id: str, pixel_steps: int) -> list[LimitState]:
        """Admit one render job of the key ``name``: count it as live and charge its cost.

        Args:
            name: The key's name.
            job_id: The id the job will be submitted with.
            pixel_steps: Its cost, ``RenderParams.pixel_steps()``.

        Returns:
            Where the key stands on jobs and budget (for the ``x-ratelimit-*`` headers).

        Raises:
            RateLimitError: The key has as many jobs live as it may, or the job's cost does not
                fit in what is left of its daily budget.
        """
        limits = limits_for(self.settings, name)
        now = time.time()
        day, until_midnight = _utc_day(now)
        outcome, live, used = await self._admit(
            keys=[
                constants.quota_jobs_key(name),
                constants.quota_budget_key(name, day),
                constants.METRICS_KEY,
            ],
            args=[
                job_id,
                repr(now),
                limits.jobs,
                limits.daily_pixel_steps,
                pixel_steps,
                _DAY_S + 3600,
                _GRACE_S,
                constants.JOB_KEY_PREFIX,
                self.settings.job_ttl_s,
                name,
            ],
        )
        states: list[LimitState] = []
        if limits.jobs:
            states.append(LimitState("jobs", limits.jobs, limits.jobs - int(live)))
        if limits.daily_pixel_steps:
            budget = _megapixel_steps(limits.daily_pixel_steps)
            left = _megapixel_steps(limits.daily_pixel_steps - int(used))
            states.append(LimitState("megapixel-steps", budget, left, until_midnight))
        headers = {key: value for state in states for key, value in state.headers().items()}
        if outcome == "jobs":
            raise RateLimitError(
                f"the API key {name!r} has {live} render jobs queued or running, its limit;"
                " wait for one to end",
                retry_after_s=self.settings.retry_after_s,
                headers=headers,
            )
        if outcome == "budget":
            raise RateLimitError(
                f"this render needs {pixel_steps / _MEGA:.1f} megapixel-steps and the API key"
                f" {name!r} has {(limits.daily_pixel_steps - int(used)) / _MEGA:.1f} left of its"
                f" daily {limits.daily_pixel_steps / _MEGA:.1f} (it resets at 00:00 UTC)",
                retry_after_s=max(1, math.ceil(until_midnight)),
                headers=headers,
            )
        return states

    async def release_job(self, name: str, job_id: str, pixel_steps: int) -> None:
        """Undo :meth:`admit_job` for a job that was not enqueued after all."""
        day, _ = _utc_day(time.time())
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(constants.quota_jobs_key(name), job_id)
            pipe.decrby(constants.quota_budget_key(name, day), pixel_steps)
            pipe.hincrby(constants.METRICS_KEY, f"key_pixel_steps:{name}", -pixel_steps)
            await pipe.execute()
