"""The body limit as plain ASGI: declared and counted sizes, what the app sees, what passes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

import pytest
from omost_schema.asgi_limits import BodySizeLimit, Message, Receive, Scope, Send

LIMIT = 100


class EchoApp:
    """Reads the whole body (as a framework does) and answers 200 with its length."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.saw_disconnect = False
        self.raise_on_disconnect = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.saw_disconnect = True
                if self.raise_on_disconnect:
                    raise RuntimeError("client went away")
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        self.bodies.append(body)
        payload = str(len(body)).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": payload, "more_body": False})


def call(
    app: Any, chunks: Iterable[bytes], headers: list[tuple[bytes, bytes]] | None = None
) -> list[Message]:
    """Run one HTTP request through ``app``; return every message it sent."""
    pending: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks
    ]
    pending.append({"type": "http.request", "body": b"", "more_body": False})
    sent: list[Message] = []
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers or []}

    async def receive() -> Message:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def answer(sent: list[Message]) -> tuple[int, dict[bytes, bytes], bytes]:
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


def assert_envelope(body: bytes) -> dict[str, Any]:
    error: dict[str, Any] = json.loads(body)["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "request_too_large"
    assert str(LIMIT) in error["message"]
    return error


def test_chunked_body_over_the_limit_gets_413_and_the_app_sees_a_disconnect() -> None:
    app = EchoApp()
    sent = call(BodySizeLimit(app, max_bytes=LIMIT), [b"x" * 60, b"x" * 60, b"x" * 60])
    status, headers, body = answer(sent)
    assert status == 413
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"connection"] == b"close"
    assert_envelope(body)
    # The app's own answer is dropped: exactly one response goes out.
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert app.saw_disconnect


def test_declared_length_over_the_limit_is_refused_before_the_app_runs() -> None:
    app = EchoApp()
    sent = call(BodySizeLimit(app, max_bytes=LIMIT), [b"x"], [(b"content-length", b"5000")])
    status, _, body = answer(sent)
    assert status == 413
    assert "5000" in assert_envelope(body)["message"]
    assert app.bodies == []
    assert not app.saw_disconnect


def test_a_false_small_content_length_is_still_counted() -> None:
    app = EchoApp()
    limit = BodySizeLimit(app, max_bytes=LIMIT)
    sent = call(limit, [b"x" * 80, b"x" * 80], [(b"content-length", b"10")])
    assert answer(sent)[0] == 413


def test_body_at_the_limit_passes_untouched() -> None:
    app = EchoApp()
    sent = call(BodySizeLimit(app, max_bytes=LIMIT), [b"x" * 50, b"y" * 50])
    assert answer(sent) == (200, {}, b"100")
    assert app.bodies == [b"x" * 50 + b"y" * 50]


def test_an_app_that_fails_on_the_disconnect_still_answers_413() -> None:
    app = EchoApp()
    app.raise_on_disconnect = True
    sent = call(BodySizeLimit(app, max_bytes=LIMIT), [b"x" * 200])
    assert answer(sent)[0] == 413


def test_an_app_error_under_the_limit_propagates() -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        call(BodySizeLimit(broken, max_bytes=LIMIT), [b"x"])


def test_non_http_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        pass

    asyncio.run(BodySizeLimit(app, max_bytes=0)({"type": "lifespan"}, receive, send))
    assert seen == ["lifespan"]


def test_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        BodySizeLimit(EchoApp(), max_bytes=-1)
