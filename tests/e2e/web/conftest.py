"""Browser tests of the web page against real service processes on CPU.

One session starts: redis-server on a free port; the real LLM service (`omost-llm serve`, tiny
transformers backend); a fake LLM that streams a known canvas slowly (for exact assertions); three
`omost-renderer api` processes (real LLM, fake LLM, and an unreachable LLM with a one-job backlog
on an unserved Redis database, for the error paths); one `omost-renderer worker` with the tiny
pipeline. Chromium is Debian's, driven by Playwright through its executable path.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, sync_playwright

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

sys.path.insert(0, str(HERE))
from fake_llm import FakeLLM, build_fake_llm  # noqa: E402


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


@dataclass
class Stack:
    """Addresses of the running services."""

    real: str  # renderer API whose LLM is the real service
    fake: str  # renderer API whose LLM is the fake one
    broken: str  # renderer API with no LLM and a full queue after one job
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


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (scripts/ensure-redis.sh installs it)")
    folder = tmp_path_factory.mktemp("web-stack")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    processes = Processes(ARTIFACTS)
    fake = FakeLLM()
    redis_port, llm_port, fake_port = free_port(), free_port(), free_port()
    api_ports = {"real": free_port(), "fake": free_port(), "broken": free_port()}
    try:
        redis = processes.start(
            "redis",
            [
                "redis-server",
                "--port",
                str(redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(folder),
            ],
            {},
        )
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        llm = processes.start(
            "llm",
            [str(BIN / "omost-llm"), "serve", "--host", "127.0.0.1", "--port", str(llm_port)],
            {"OMOST_LLM_BACKEND": "transformers", "OMOST_LLM_MODEL": "tiny"},
        )
        common = {
            "OMOST_RENDERER_RESULTS_DIR": str(folder / "results"),
            "OMOST_RENDERER_DEVICE": "cpu",
            "OMOST_RENDERER_DTYPE": "float32",
        }
        llm_urls = {
            "real": f"http://127.0.0.1:{llm_port}",
            "fake": f"http://127.0.0.1:{fake_port}",
            "broken": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        }
        apis = {}
        for name, port in api_ports.items():
            env = {**common, "OMOST_REDIS_URL": redis_url, "OMOST_RENDERER_LLM_URL": llm_urls[name]}
            if name == "broken":
                # Database 1 has no worker: one queued job fills a backlog of one.
                env["OMOST_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/1"
                env["OMOST_RENDERER_MAX_BACKLOG"] = "1"
            apis[name] = processes.start(
                f"api-{name}",
                [str(BIN / "omost-renderer"), "api", "--host", "127.0.0.1", "--port", str(port)],
                env,
            )
        worker = processes.start(
            "worker",
            [str(BIN / "omost-renderer"), "worker"],
            {
                **common,
                "OMOST_REDIS_URL": redis_url,
                "OMOST_RENDERER_MODEL": "tiny",
                "OMOST_RENDERER_PREVIEW_EVERY": "1",
            },
        )
        with ThreadServer(build_fake_llm(fake), fake_port):
            for name, port in api_ports.items():
                url = f"http://127.0.0.1:{port}"
                assert wait_ready(f"{url}/health", apis[name], STARTUP_S), f"api-{name} not up"
            assert wait_ready(f"http://127.0.0.1:{fake_port}/ready", None, 30), "fake LLM not up"
            assert redis.poll() is None
            assert worker.poll() is None
            yield Stack(
                real=f"http://127.0.0.1:{api_ports['real']}",
                fake=f"http://127.0.0.1:{api_ports['fake']}",
                broken=f"http://127.0.0.1:{api_ports['broken']}",
                fake_llm=fake,
                llm_url=llm_urls["real"],
                llm_process=llm,
                logs=ARTIFACTS,
            )
    finally:
        processes.stop_all()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    executable = os.environ.get("OMOST_CHROMIUM", "/usr/bin/chromium")
    if not Path(executable).exists():
        pytest.skip(f"no Chromium at {executable} (scripts/ensure-browser.sh installs it)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh page; its console errors are collected and a screenshot is saved at the end."""
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.errors = []  # uncaught exceptions in the page: always a defect
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    yield page
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    context.close()
    assert page.errors == [], f"uncaught errors in the page: {page.errors}"


def open_page(page: Page, url: str) -> None:
    """Load the page and wait until it has its vocabulary."""
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
