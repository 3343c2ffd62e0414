"""Per-key rate-limit answers of both services, as OpenAI sends them.

OpenAI answers every request with ``x-ratelimit-limit-<resource>``,
``x-ratelimit-remaining-<resource>`` and ``x-ratelimit-reset-<resource>`` (a duration such as
``1s`` or ``6m0s``), for ``requests`` and ``tokens``; over a limit it answers 429 with
``Retry-After``. Both services do the same for their own resources (the renderer adds ``jobs``
and ``megapixel-steps``). A route records what it counted on the request's ASGI state under
``STATE_KEY``; :class:`RateLimitHeaders` puts it on the answer, whatever the route returned.

Written against plain ASGI callables, so this package stays free of any web framework.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from omost_schema.asgi_limits import ASGIApp, Message, Receive, Scope, Send

#: Key of the ASGI request state (``request.state``) holding the answer's limit headers.
STATE_KEY = "omost_rate_limits"
#: ``error.code`` of a 429 for a per-key limit.
RATE_LIMITED_CODE = "rate_limit_exceeded"
#: The 429 answer as an OpenAPI ``(status, description)`` for ``error_responses``.
RATE_LIMITED_DOC = (429, "A per-key limit is reached; `Retry-After` says when to come back.")


def format_reset(seconds: float) -> str:
    """Format a time until reset as OpenAI does: ``20ms``, ``17s``, ``6m0s``, ``1h2m3s``."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


@dataclass(frozen=True)
class LimitState:
    """Where one key stands against one limit.

    Attributes:
        resource: What is counted, as in the header names (``requests``, ``tokens``, ``jobs``).
        limit: The limit.
        remaining: What is left of it (never below 0).
        reset_s: Seconds until the count starts again; ``None`` for a limit that does not reset
            with time (jobs at once).
    """

    resource: str
    limit: int
    remaining: int
    reset_s: float | None = None

    def headers(self) -> dict[str, str]:
        """This limit's ``x-ratelimit-*`` headers."""
        out = {
            f"x-ratelimit-limit-{self.resource}": str(self.limit),
            f"x-ratelimit-remaining-{self.resource}": str(max(0, self.remaining)),
        }
        if self.reset_s is not None:
            out[f"x-ratelimit-reset-{self.resource}"] = format_reset(self.reset_s)
        return out


def limit_headers(states: list[LimitState]) -> dict[str, str]:
    """The ``x-ratelimit-*`` headers of several limits."""
    out: dict[str, str] = {}
    for state in states:
        out.update(state.headers())
    return out


def record(scope_state: dict[str, object], states: list[LimitState]) -> None:
    """Keep ``states`` on a request's ASGI state, for :class:`RateLimitHeaders` to send.

    Args:
        scope_state: The request's ``scope["state"]`` dictionary.
        states: What the request was counted against; later calls add to or replace earlier.
    """
    kept = scope_state.setdefault(STATE_KEY, {})
    assert isinstance(kept, dict)
    kept.update(limit_headers(states))


class RateLimitHeaders:
    """ASGI middleware: add the limit headers a route recorded to its answer.

    A route's own answer object (a stream, a PNG, an error from the handler) carries them too,
    which framework-level response headers would miss.

    Args:
        app: The wrapped app.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = state.get(STATE_KEY) if isinstance(state, dict) else None
                if kept:
                    present = {bytes(name).lower() for name, _ in message.get("headers", ())}
                    extra = [
                        (name.encode(), value.encode())
                        for name, value in kept.items()
                        if name.encode() not in present
                    ]
                    message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_limits)
