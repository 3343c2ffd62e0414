"""Real servers in test threads on free ports: an ASGI app on uvicorn, or a stdlib HTTP handler.

Shared by the renderer service tests (imported as ``threaded_server``, their folder is on
``sys.path``) and by the API and LLM tests (imported as ``renderer.service.threaded_server``,
``tests/`` is on ``sys.path`` for those packages), so it imports nothing else of the tests.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import uvicorn


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve(app: Any, start_timeout_s: float = 60) -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread on a free port; yield its base URL.

    Args:
        app: The ASGI application to serve (its lifespan runs).
        start_timeout_s: How long to wait for the server to start.

    Yields:
        The server's base URL, ``http://127.0.0.1:<port>``.

    Raises:
        RuntimeError: The server did not start in time, or its thread died.
    """
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def serve_handler(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a threading HTTP server in a thread on a free port; yield its URL.

    Args:
        handler: The request handler class (a fake upstream's whole behaviour).

    Yields:
        The server's base URL, ``http://127.0.0.1:<port>``.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
