"""Rate-limit headers as OpenAI sends them, and the ASGI middleware that puts them on answers."""

from __future__ import annotations

import asyncio

import pytest
from omost_schema.asgi_limits import Message, Receive, Scope, Send
from omost_schema.rate_limits import LimitState, RateLimitHeaders, format_reset, record


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.02, "20ms"), (1.0, "1s"), (17.2, "18s"), (360, "6m0s"), (3723, "1h2m3s")],
)
def test_reset_durations_are_formatted_as_openai_does(seconds: float, text: str) -> None:
    assert format_reset(seconds) == text


def test_limit_state_headers() -> None:
    assert LimitState("requests", 60, 59, 30).headers() == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "30s",
    }
    assert LimitState("jobs", 4, -1).headers() == {
        "x-ratelimit-limit-jobs": "4",
        "x-ratelimit-remaining-jobs": "0",
    }


def _run(app: RateLimitHeaders) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app({"type": "http", "headers": []}, receive, send))
    return sent


def test_recorded_limits_are_added_to_whatever_the_app_answers() -> None:
    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        record(scope["state"], [LimitState("requests", 10, 3, 5)])
        headers = [(b"x-ratelimit-limit-requests", b"own")]
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})

    start = _run(RateLimitHeaders(inner))[0]
    headers = dict(start["headers"])
    assert headers[b"x-ratelimit-remaining-requests"] == b"3"
    assert headers[b"x-ratelimit-reset-requests"] == b"5s"
    # A header the answer sets itself is not repeated.
    assert [name for name, _ in start["headers"]].count(b"x-ratelimit-limit-requests") == 1


def test_an_answer_without_recorded_limits_is_untouched() -> None:
    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"a", b"b")]})
        await send({"type": "http.response.body", "body": b""})

    assert _run(RateLimitHeaders(inner))[0]["headers"] == [(b"a", b"b")]
