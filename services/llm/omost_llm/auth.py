"""Who may use the LLM service: the API-key dependency and per-key rate limits.

Every ``/v1/*`` route depends on :func:`authenticate`: with keys configured (``api_keys``), a
request needs ``Authorization: Bearer <key>`` (what the openai SDK sends for ``api_key=``) and
is counted against its key's requests a minute; a chat or canvas request then counts its tokens
with :func:`charge_tokens`. The service has no Redis, so the limits are kept in process, one
count per replica: behind N replicas a key gets up to N times its limits (the renderer's limits,
in Redis, are the fleet's). Windows are fixed minutes of Unix time. Without keys the service is
open and has no limits.
"""

from __future__ import annotations

import hmac
import logging
import math
import time
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request
from omost_schema.api_keys import (
    MISSING_KEY_CODE,
    UNAUTHORIZED_HEADERS,
    KeyRing,
    bearer_token,
    unauthorized_message,
)
from omost_schema.rate_limits import LimitState, limit_headers, record

from omost_llm.config import Settings
from omost_llm.errors import AuthenticationError, KeyRateLimitError
from omost_llm.metrics import Metrics

logger = logging.getLogger(__name__)

_WINDOW_S = 60


@dataclass
class _Window:
    minute: int
    requests: int = 0
    tokens: int = 0


class KeyLimiter:
    """Requests and tokens a minute per key, counted in this process.

    Args:
        settings: ``requests_per_minute``, ``tokens_per_minute`` and ``key_limits``.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._windows: dict[str, _Window] = {}

    def _limits(self, name: str) -> tuple[int, int]:
        override = self.settings.key_limits.get(name)
        rpm, tpm = self.settings.requests_per_minute, self.settings.tokens_per_minute
        if override is not None:
            rpm = override.requests_per_minute if override.requests_per_minute is not None else rpm
            tpm = override.tokens_per_minute if override.tokens_per_minute is not None else tpm
        return rpm, tpm

    def _window(self, name: str, now: float) -> _Window:
        minute = int(now // _WINDOW_S)
        window = self._windows.get(name)
        if window is None or window.minute != minute:
            # One entry per key name: the names are the configured ones, a bounded set.
            window = self._windows[name] = _Window(minute)
        return window

    def count_request(self, name: str, now: float | None = None) -> list[LimitState]:
        """Count one request of ``name``.

        Returns:
            Where the key stands on requests and tokens (for the ``x-ratelimit-*`` headers).

        Raises:
            KeyRateLimitError: The key used its requests of this minute.
        """
        return self._count(name, "requests", 1, now)

    def charge_tokens(self, name: str, tokens: int, now: float | None = None) -> list[LimitState]:
        """Count ``tokens`` of ``name`` against its tokens a minute.

        A request is refused only when the key has nothing left this minute, so one request
        larger than the whole limit still runs once a minute.

        Raises:
            KeyRateLimitError: The key used its tokens of this minute.
        """
        return self._count(name, "tokens", tokens, now)

    def _count(
        self, name: str, kind: Literal["requests", "tokens"], amount: int, now: float | None
    ) -> list[LimitState]:
        """Add ``amount`` to ``name``'s ``kind`` this minute, refusing it when none is left."""
        now = time.time() if now is None else now
        rpm, tpm = self._limits(name)
        window = self._window(name, now)
        reset = _WINDOW_S - (now % _WINDOW_S)
        limit = rpm if kind == "requests" else tpm
        if limit and getattr(window, kind) >= limit:
            message = (
                f"the API key {name!r} made {rpm} requests this minute, its limit"
                if kind == "requests"
                else f"the API key {name!r} used its {tpm} tokens of this minute"
            )
            raise _limited(message, reset, self._states(window, rpm, tpm, reset))
        setattr(window, kind, getattr(window, kind) + amount)
        return self._states(window, rpm, tpm, reset)

    @staticmethod
    def _states(window: _Window, rpm: int, tpm: int, reset: float) -> list[LimitState]:
        states = []
        if rpm:
            states.append(LimitState("requests", rpm, rpm - window.requests, reset))
        if tpm:
            states.append(LimitState("tokens", tpm, tpm - window.tokens, reset))
        return states


def _limited(message: str, reset: float, states: list[LimitState]) -> KeyRateLimitError:
    error = KeyRateLimitError(message, retry_after=max(1, math.ceil(reset)))
    error.headers = limit_headers(states)
    return error


def _unauthorized(code: str) -> AuthenticationError:
    error = AuthenticationError(unauthorized_message(code), code=code)
    error.headers = dict(UNAUTHORIZED_HEADERS)
    return error


@dataclass(frozen=True)
class Access:
    """What ``create_app`` keeps on ``app.state.access``: keys, their limiter, metrics."""

    keys: KeyRing
    limiter: KeyLimiter
    metrics_key: str | None
    metrics: Metrics


def _access(request: Request) -> Access:
    access: Access = request.app.state.access
    return access


async def authenticate(request: Request) -> str | None:
    """FastAPI dependency: check the API key and count the request.

    Returns:
        The key's name, or ``None`` when the service is open.

    Raises:
        AuthenticationError: Keys are configured and the request's is missing or wrong (401).
        KeyRateLimitError: The key used its requests of this minute (429).
    """
    access = _access(request)
    if access.keys.is_open:
        return None
    name, code = access.keys.authenticate(request.headers.get("authorization"))
    if name is None:
        # Never the key itself: only what was wrong with it.
        logger.info("refused %s %s: %s", request.method, request.url.path, code)
        raise _unauthorized(code or MISSING_KEY_CODE)
    request.state.key_name = name
    try:
        states = access.limiter.count_request(name)
    except KeyRateLimitError as error:
        logger.info("key %s: %s", name, error.message)
        access.metrics.key_requests.labels(name, "rate_limited").inc()
        raise
    access.metrics.key_requests.labels(name, "allowed").inc()
    record(request.scope.setdefault("state", {}), states)
    return name


KeyName = Annotated[str | None, Depends(authenticate)]


def estimate_tokens(texts: list[str], max_tokens: int) -> int:
    """A request's tokens as OpenAI's limiter estimates them: prompt characters / 4 + max_tokens."""
    return math.ceil(sum(len(text) for text in texts) / 4) + max_tokens


def charge_tokens(request: Request, tokens: int) -> None:
    """Count a request's tokens against its key's tokens a minute (nothing when open).

    Raises:
        KeyRateLimitError: The key used its tokens of this minute.
    """
    name = getattr(request.state, "key_name", None)
    if not isinstance(name, str):
        return
    access = _access(request)
    try:
        states = access.limiter.charge_tokens(name, tokens)
    except KeyRateLimitError as error:
        logger.info("key %s: %s", name, error.message)
        access.metrics.key_requests.labels(name, "rate_limited").inc()
        raise
    record(request.scope.setdefault("state", {}), states)


async def authenticate_metrics(request: Request) -> None:
    """FastAPI dependency of ``/metrics``: its own key when ``metrics_api_key`` is set."""
    expected = _access(request).metrics_key
    if expected is None:
        return
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise _unauthorized(MISSING_KEY_CODE)
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise _unauthorized("invalid_api_key")
