"""Real servers in test threads, for tests about connections: the renderer API on uvicorn, and
an LLM service that never answers and records when its client hangs up."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import httpx
from omost_renderer.api import create_app
from omost_renderer.config import Settings
from threaded_server import serve, serve_handler


@contextmanager
def serve_api(settings: Settings, start_timeout_s: float = 60) -> Iterator[str]:
    """Serve the renderer API under ``settings`` on a free port; yield its base URL."""
    with serve(create_app(settings), start_timeout_s) as url:
        yield url


@dataclass
class HangingLLM:
    """What the hanging LLM saw: a request came in; its client closed the connection."""

    url: str
    entered: threading.Event = field(default_factory=threading.Event)
    closed: threading.Event = field(default_factory=threading.Event)


@contextmanager
def hanging_llm() -> Iterator[HangingLLM]:
    """Serve an LLM service whose every POST waits, answering nothing, until its client leaves."""
    seen = HangingLLM(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            seen.entered.set()
            self.connection.settimeout(60)
            try:
                gone = self.connection.recv(1) == b""
            except OSError:
                gone = True
            if gone:
                seen.closed.set()

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serve_handler(Handler) as url:
        seen.url = url
        yield seen


def post_and_hold(
    url: str, path: str, payload: dict[str, object], headers: dict[str, str] | None = None
) -> socket.socket:
    """Send a POST on a raw connection and keep the connection open without reading."""
    address = httpx.URL(url)
    sock = socket.create_connection((address.host, address.port or 80), timeout=30)
    data = json.dumps(payload).encode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {address.host}\r\n{extra}"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    sock.sendall(head.encode() + data)
    return sock
