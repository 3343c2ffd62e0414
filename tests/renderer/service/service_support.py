"""Helpers of the renderer service tests: redis-server processes, settings, worker threads."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from omost_renderer.config import Settings
from omost_renderer.worker.runner import Worker
from redis import Redis

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A redis-server process on a free port, in its own folder."""

    def __init__(self, folder: Path, *, aof: bool = False) -> None:
        self.folder = folder
        self.port = free_port()
        self.aof = aof
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.folder), "--save", "", "--daemonize", "no"]
        if self.aof:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


# The two fixtures below are imported by the conftest of each test folder that needs redis, so that
# each folder gets its own session-wide redis-server, as a fixture defined in its conftest would.
@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """Start one redis-server for the test session; skip where none is installed."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """Return the URL of the session's redis-server, emptied for this test."""
    client = Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


def make_settings(redis_url: str, results_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "redis_url": redis_url,
        "results_dir": results_dir,
        "reclaim_after_s": 1.0,
        "heartbeat_s": 0.2,
        "block_ms": 100,
        "max_attempts": 3,
        "preview_every": 2,
        "shutdown_grace_s": 30.0,
        "retry_after_s": 7,
        "llm_url": "http://127.0.0.1:1",
    }
    values.update(overrides)
    return Settings.model_validate(values)


class WorkerThread:
    """A worker running in a thread of the test process."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.thread = threading.Thread(target=worker.run, kwargs={"install_signals": False})

    def start(self) -> WorkerThread:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.worker.stop(grace_s=0)
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


def subprocess_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "OMOST_REDIS_URL": settings.redis_url,
            "OMOST_RENDERER_RESULTS_DIR": str(settings.results_dir),
            "OMOST_RENDERER_RECLAIM_AFTER_S": str(settings.reclaim_after_s),
            "OMOST_RENDERER_HEARTBEAT_S": str(settings.heartbeat_s),
            "OMOST_RENDERER_BLOCK_MS": str(settings.block_ms),
            "OMOST_RENDERER_MAX_ATTEMPTS": str(settings.max_attempts),
            "OMOST_RENDERER_FACTORY": "fake_renderer:build",
            "PYTHONPATH": os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
        }
    )
    env.update(extra)
    return env


def start_process(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "omost_renderer.cli", *args],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def wait_for(
    predicate: Callable[[], object], timeout: float = 60.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
