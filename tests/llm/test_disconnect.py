"""A client that leaves mid-generation stops the work and frees its slot (real uvicorn server)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest
from omost_llm.config import OutputMode, Settings
from omost_llm.main import create_app

from .conftest import serve_app
from .fakes import FakeBackend, make_canvas

USER = [{"role": "user", "content": "a dragon over a castle"}]
CHAT = {"model": "test-model", "messages": USER}
CANVAS_EDIT = {"prompt": "make it blue", "previous_canvas": make_canvas().model_dump(mode="json")}


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:g} s: {what}")
        time.sleep(0.02)


def post_and_leave(
    url: str, path: str, body: dict[str, object], fake: FakeBackend, *, silent: bool
) -> None:
    """Send the request on a raw connection and close it once the generation is under way.

    ``silent``: nothing has been answered by then (the answer waits for the whole canvas).
    """
    address = urlsplit(url)
    data = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {address.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    with socket.create_connection((address.hostname, address.port)) as sock:
        sock.sendall(head.encode() + data)
        wait_for(lambda: fake.deltas >= 2, "the generation started")
        if silent:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
        else:
            assert sock.recv(15) == b"HTTP/1.1 200 OK"


def running(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    (line,) = [x for x in text.splitlines() if x.startswith("omost_llm_running_generations ")]
    return float(line.split()[1])


@pytest.mark.parametrize(
    ("path", "body", "output"),
    [
        ("/v1/chat/completions", CHAT, OutputMode.CODE),
        ("/v1/canvases", CANVAS_EDIT, OutputMode.CODE),
        # Constrained JSON mode streams live too (the code of each finished region).
        ("/v1/chat/completions", {**CHAT, "stream": True}, OutputMode.JSON),
        # Code mode streams live: the stream has started when the client leaves.
        ("/v1/chat/completions", {**CHAT, "stream": True}, OutputMode.CODE),
    ],
    ids=["chat", "canvases", "chat-json-stream", "chat-code-stream"],
)
def test_a_client_that_leaves_cancels_its_generation_and_frees_its_slot(
    settings_factory: Callable[..., Settings],
    path: str,
    body: dict[str, object],
    output: OutputMode,
) -> None:
    # Each delta takes 0.05 s and the canvas has many: the client leaves mid-generation.
    outputs = [make_canvas().model_dump_json()] if output is OutputMode.JSON else None
    fake = FakeBackend(delay_s=0.05, **({"outputs": outputs} if outputs else {}))
    # One slot and no queue: a slot still held would answer the next request 429.
    settings = settings_factory(max_concurrency=1, max_queue=0, output=output)
    with serve_app(create_app(settings, fake)) as url:
        live = body.get("stream") is True
        post_and_leave(url, path, body, fake, silent=not live)
        wait_for(lambda: fake.cancelled == 1, "the generation was cancelled")
        wait_for(lambda: running(url) == 0, "the slot was released")
        assert fake.completed == 0
        fake.delay_s = 0.0
        again = httpx.post(f"{url}{path}", json=body, timeout=30)
        assert again.status_code == 200
        assert fake.completed == 1
        if not live:
            # Left before its status line: counted as 499 (client closed request).
            metrics = httpx.get(f"{url}/metrics").text
            assert f'omost_llm_requests_total{{route="{path}",status="499"}} 1.0' in metrics
