"""A request-body limit for any ASGI app, counted as the bytes arrive.

Both services wrap their apps in :class:`BodySizeLimit`. A ``Content-Length`` header alone cannot
be trusted to bound a body (a chunked upload has none), so the limit counts the bytes of every
``http.request`` message the app reads and stops at the first byte over the limit. The answer is
413 in the OpenAI error envelope.

Written against plain ASGI callables, so this package stays free of any web framework.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from omost_schema.errors import ErrorResponse

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: ``error.code`` of the 413 answer.
TOO_LARGE_CODE = "request_too_large"
#: The 413 answer as an OpenAPI `(status, description)` for `error_responses`.
TOO_LARGE_DOC = (413, "The request body is over the size limit.")

logger = logging.getLogger(__name__)


def too_large_response(message: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two ASGI messages of a 413 answer in the OpenAI envelope.

    Args:
        message: What the client is told (sizes and the limit).

    Returns:
        ``(http.response.start, http.response.body)``. The answer closes the connection, since
        the rest of the body is never read.
    """
    body = ErrorResponse.build(message, "invalid_request_error", code=TOO_LARGE_CODE)
    payload = body.model_dump_json().encode()
    start = {
        "type": "http.response.start",
        "status": 413,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"connection", b"close"),
        ],
    }
    return start, {"type": "http.response.body", "body": payload, "more_body": False}


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            text = bytes(value).strip()
            return int(text) if text.isdigit() else None
    return None


class _CountedBody:
    """One request's ``receive`` and ``send``, counting body bytes against the limit."""

    def __init__(self, max_bytes: int, receive: Receive, send: Send) -> None:
        self.max_bytes = max_bytes
        self.received = 0
        self.refused = False
        self.started = False
        self._receive = receive
        self._send = send

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] != "http.request":
            return message
        self.received += len(message.get("body", b""))
        if self.received <= self.max_bytes:
            return message
        self.refused = True
        if not self.started:
            self.started = True
            for part in too_large_response(
                f"the request body is over {self.max_bytes} bytes, the limit"
            ):
                await self._send(part)
        # To the app the client is gone: it stops reading and its answer is dropped.
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


class BodySizeLimit:
    """ASGI middleware: answer 413 to a request body over ``max_bytes``.

    A declared ``Content-Length`` over the limit is refused before anything is read; otherwise
    the bytes are counted as the app reads them, so a chunked body is refused at the first byte
    over the limit, with at most one ``http.request`` message more in memory. Only HTTP requests
    are limited; websockets and lifespan pass through.

    Args:
        app: The wrapped app.
        max_bytes: Largest body accepted, in bytes.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            for part in too_large_response(
                f"the request body has {declared} bytes; the limit is {self.max_bytes}"
            ):
                await send(part)
            return
        body = _CountedBody(self.max_bytes, receive, send)
        try:
            await self.app(scope, body.receive, body.send)
        except Exception:
            if not body.refused:
                raise
            # The app saw the client leave (our doing) and gave up reading; the 413 is sent.
            logger.debug("request body over the limit; the app stopped with an error")
