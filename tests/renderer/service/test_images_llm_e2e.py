from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from omost_renderer.api import create_app
from openai import OpenAI
from PIL import Image
from service_support import ROOT, WorkerThread, free_port, make_settings, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def llm_url(tmp_path: Path) -> Iterator[str]:
    """``omost-llm serve`` with its CPU backend (the tiny random model), as a real process."""
    port = free_port()
    env = {
        "OMOST_LLM_BACKEND": "transformers",
        "OMOST_LLM_MODEL": "tiny",
        "OMOST_LLM_MAX_TOKENS_LIMIT": "8192",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    command = [str(Path(sys.executable).parent / "omost-llm"), "serve", "--port", str(port)]
    with (tmp_path / "llm.log").open("wb") as log:
        process = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=log, stderr=log, cwd=ROOT
        )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError((tmp_path / "llm.log").read_text()[-3000:])
        try:
            return httpx.get(f"{url}/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, timeout=240, what="omost-llm to start")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_openai_sdk_against_facade_with_real_llm_and_tiny_pipeline(
    redis_url: str,
    tmp_path: Path,
    llm_url: str,
    start_worker: Callable[..., WorkerThread],
) -> None:
    from omost_renderer.pipelines.sdxl.tiny import build_tiny_renderer

    # The tiny model's random weights write short canvases with this seed (others can take minutes).
    settings = make_settings(
        redis_url,
        tmp_path / "results",
        llm_url=llm_url,
        llm_seed=7,
        llm_timeout_s=240,
        images_steps=2,
    )
    start_worker(build_tiny_renderer(), settings)
    with TestClient(create_app(settings)) as client:
        sdk = OpenAI(
            base_url=f"{client.base_url}/v1", api_key="unused", http_client=client, max_retries=0
        )
        result = sdk.images.generate(
            prompt="a red fox in the snow", size="64x128", response_format="b64_json"
        )
    assert result.data is not None
    assert len(result.data) == 1
    image = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json or "")))
    assert image.size == (64, 128)
    assert result.data[0].revised_prompt
