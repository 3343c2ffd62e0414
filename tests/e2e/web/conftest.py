"""Fixtures of the browser tests of the web page, against real service processes on CPU.

One session starts: redis-server on a free port; the real LLM service (`omost-llm serve`, tiny
transformers backend); a fake LLM that streams a known canvas slowly (for exact assertions); three
`omost-renderer api` processes (real LLM, fake LLM, and an unreachable LLM with a one-job backlog
on an unserved Redis database, for the error paths; and one that requires an API key, on the
fake LLM); one `omost-renderer worker` with the tiny
pipeline. Chromium is Debian's, driven by Playwright through its executable path.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from web_fake_llm import FakeLLM, build_fake_llm
from web_stack import (
    API_KEY,
    ARTIFACTS,
    BIN,
    CHROMIUM_ARGS,
    STARTUP_S,
    Processes,
    Stack,
    ThreadServer,
    free_port,
    wait_ready,
)


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (scripts/ensure-redis.sh installs it)")
    folder = tmp_path_factory.mktemp("web-stack")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    processes = Processes(ARTIFACTS)
    fake = FakeLLM()
    redis_port, llm_port, fake_port = free_port(), free_port(), free_port()
    api_ports = {
        "real": free_port(),
        "fake": free_port(),
        "broken": free_port(),
        "keyed": free_port(),
    }
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
            # One environment for the API and the worker, as compose and Kubernetes give them:
            # a job without `model` submitted before the worker is up goes to the model's stream.
            "OMOST_RENDERER_MODEL": "tiny",
        }
        llm_urls = {
            "real": f"http://127.0.0.1:{llm_port}",
            "fake": f"http://127.0.0.1:{fake_port}",
            "broken": f"http://127.0.0.1:{free_port()}",  # nothing listens there
            "keyed": f"http://127.0.0.1:{fake_port}",
        }
        apis = {}
        for name, port in api_ports.items():
            env = {**common, "OMOST_REDIS_URL": redis_url, "OMOST_RENDERER_LLM_URL": llm_urls[name]}
            if name == "broken":
                # Database 1 has no worker: one queued job fills a backlog of one.
                env["OMOST_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/1"
                env["OMOST_RENDERER_MAX_BACKLOG"] = "1"
            if name == "keyed":
                env["OMOST_RENDERER_API_KEYS"] = f"web={API_KEY}"
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
                keyed=f"http://127.0.0.1:{api_ports['keyed']}",
                fake_llm=fake,
                llm_url=llm_urls["real"],
                llm_process=llm,
                logs=ARTIFACTS,
            )
    finally:
        processes.stop_all()


# Module scope: Playwright's sync API keeps an event loop running in the main thread while it is
# open, which would break every later test that runs its own loop (a directory without
# __init__.py gets no package teardown of its own, so "package" would last the whole session).
@pytest.fixture(scope="module")
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
