"""The renderer API on a real uvicorn server in a test thread, for tests about connections."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from omost_renderer.api import create_app
from omost_renderer.config import Settings
from service_support import free_port


@contextmanager
def serve_api(settings: Settings, start_timeout_s: float = 60) -> Iterator[str]:
    """Serve the renderer API under ``settings`` on a free port; yield its base URL."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
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
