from __future__ import annotations

import io
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fake_renderer import canvas_json
from omost_renderer.config import Settings
from PIL import Image
from service_support import free_port, start_process, subprocess_env, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def services(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """The API and one worker with the tiny CPU pipeline, as real processes."""
    env = subprocess_env(
        settings,
        OMOST_RENDERER_MODEL="tiny",
        OMOST_RENDERER_DEVICE="cpu",
        OMOST_RENDERER_DTYPE="float32",
    )
    env.pop("OMOST_RENDERER_FACTORY")
    port = free_port()
    processes: list[subprocess.Popen[bytes]] = [
        start_process(["api", "--host", "127.0.0.1", "--port", str(port)], env, tmp_path / "a.log"),
        start_process(["worker"], env, tmp_path / "w.log"),
    ]
    base = f"http://127.0.0.1:{port}"

    def api_ready() -> bool:
        try:
            return httpx.get(f"{base}/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(api_ready, timeout=60, what="the API to start")
        yield base
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_submit_to_tiny_worker_gives_png_of_requested_size(services: str) -> None:
    with httpx.Client(base_url=services, timeout=30) as client:
        body = {"canvas": canvas_json(), "width": 128, "height": 64, "steps": 3, "seed": 3}
        submitted = client.post("/v1/renders", json=body)
        assert submitted.status_code == 202
        location = submitted.headers["location"]
        job: dict[str, object] = {}

        def finished() -> bool:
            job.update(client.get(location).json())
            return job["status"] in ("succeeded", "failed", "canceled")

        wait_for(finished, timeout=240, what="the tiny render")
        assert job["status"] == "succeeded", job
        assert job["attempts"] == 1
        assert job["progress"] == {"step": 3, "total": 3}
        png = client.get(f"{location}/images/0")
        assert png.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(png.content)).size == (128, 64)
        assert time.time() >= float(job["finished_at"])  # type: ignore[arg-type]
