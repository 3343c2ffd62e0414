"""Helpers of the browser tests: service processes, readiness, and opening the page."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from playwright.sync_api import Page
from web_fake_llm import FakeLLM

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "web"
BIN = Path(sys.executable).parent
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STARTUP_S = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(url: str, process: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    """Poll ``url`` until it answers 200; ``False`` if the process died or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


#: The key of the renderer API that requires one (``Stack.keyed``).
API_KEY = "web-page-key-0123456789"


@dataclass
class Stack:
    """Addresses of the running services."""

    real: str  # renderer API whose LLM is the real service
    fake: str  # renderer API whose LLM is the fake one
    broken: str  # renderer API with no LLM and a full queue after one job
    keyed: str  # renderer API that requires the API key `API_KEY` (fake LLM)
    fake_llm: FakeLLM
    llm_url: str
    llm_process: subprocess.Popen[bytes]
    logs: Path

    def real_llm_ready(self) -> bool:
        """Wait for the real LLM service (it loads while the other tests run)."""
        return wait_ready(f"{self.llm_url}/ready", self.llm_process, STARTUP_S)


class Processes:
    """Service processes of the session, stopped (by their own ids) at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        full_env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **env}
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=full_env)
        log.close()
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        # Newest first, so the worker and the APIs stop before the Redis they use.
        for process in reversed(self.started):
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class ThreadServer:
    """A uvicorn server in a thread of the test process (for the fake LLM)."""

    def __init__(self, app: object, port: int) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def open_page(page: Page, url: str) -> None:
    """Load the page and wait until it has its vocabulary."""
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
