"""``omost run`` as a user runs it: start all, compose and render with the CLI, stop on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.slow]

BIN = Path(sys.executable).parent
READY_LINE = "omost-serve is running"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_for_models(renderer_url: str, models: set[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    served: set[str] = set()
    while time.monotonic() < deadline:
        answer = httpx.get(f"{renderer_url}/v1/models", timeout=5.0).json()
        served = {model["id"] for model in answer["data"]}
        if served == models:
            return
        time.sleep(0.5)
    raise AssertionError(f"served {served}, expected {models}")


def _wait_for_line(process: subprocess.Popen[str], text: str, timeout_s: float) -> list[str]:
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"{text!r} never printed; output:\n{''.join(seen)}")


def test_run_compose_render_and_stop(tmp_path: Path) -> None:
    llm_port, renderer_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",  # no GPU: the CPU defaults and their warning
        "OMOST_LLM_MODEL": "tiny",  # the random-weight model (the bundled one is slower)
        "OMOST_LLM_PORT": str(llm_port),
        "OMOST_RENDERER_PORT": str(renderer_port),
        "OMOST_DATA_DIR": str(tmp_path / "data"),
        "OMOST_REDIS_URL": "",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    launcher = subprocess.Popen(
        [str(BIN / "omost"), "run", "--env-file", str(tmp_path / "absent.env")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = _wait_for_line(launcher, READY_LINE, timeout_s=240)
        assert f"http://127.0.0.1:{renderer_port}/" in "".join(
            output + [launcher.stdout.readline() for _ in range(3)]  # type: ignore[union-attr]
        )
        urls = {
            "OMOST_LLM_URL": f"http://127.0.0.1:{llm_port}",
            "OMOST_RENDERER_URL": f"http://127.0.0.1:{renderer_port}",
        }
        cli_env = {**env, **urls}
        canvas_file = tmp_path / "canvas.json"
        compose = subprocess.run(
            [str(BIN / "omost"), "compose", "a cat on a sofa", "--seed", "7",
             "--out", str(canvas_file)],
            env=cli_env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert compose.returncode == 0, compose.stderr
        assert "canvas.set_global_description(" in compose.stdout
        render = subprocess.run(
            [str(BIN / "omost"), "render", str(canvas_file), "--width", "64", "--height", "128",
             "--steps", "3", "--out", str(tmp_path / "images")],
            env=cli_env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert render.returncode == 0, render.stderr
        saved = [Path(line) for line in render.stdout.split()]
        assert len(saved) == 1
        with Image.open(saved[0]) as image:
            assert image.size == (64, 128)
        # The tiny FLUX.1 is served beside the tiny SDXL (the default above): render by model.
        _wait_for_models(urls["OMOST_RENDERER_URL"], {"tiny", "tiny-flux"}, timeout_s=120)
        flux = subprocess.run(
            [str(BIN / "omost"), "render", str(canvas_file), "--model", "tiny-flux",
             "--width", "64", "--height", "64", "--steps", "2",
             "--out", str(tmp_path / "flux")],
            env=cli_env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert flux.returncode == 0, flux.stderr
        with Image.open(flux.stdout.split()[0]) as image:
            assert image.size == (64, 64)
        # --model reaches the service: a model no worker serves is refused, naming those served.
        unknown = subprocess.run(
            [str(BIN / "omost"), "render", str(canvas_file), "--model", "dall-e-3"],
            env=cli_env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert unknown.returncode == 1
        assert "tiny-flux" in unknown.stderr
    finally:
        launcher.send_signal(signal.SIGINT)
        code = launcher.wait(timeout=90)
        launcher.stdout.close()  # type: ignore[union-attr]
    assert code == 0
    assert not _port_open(llm_port)
    assert not _port_open(renderer_port)
    # The private Redis kept its append-only file in the data folder.
    assert any((tmp_path / "data" / "redis").rglob("*.aof*"))


def test_run_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {
            **os.environ,
            "CUDA_VISIBLE_DEVICES": "",
            "OMOST_LLM_PORT": str(port),
            "OMOST_RENDERER_PORT": str(_free_port()),
            "OMOST_DATA_DIR": str(tmp_path / "data"),
        }
        done = subprocess.run(
            [str(BIN / "omost"), "run", "--env-file", str(tmp_path / "absent.env")],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 1
    assert f"port {port}" in done.stderr
    assert "OMOST_LLM_PORT" in done.stderr
