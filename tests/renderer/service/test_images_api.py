from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fake_renderer import canvas_json
from fastapi.testclient import TestClient
from live_server import hanging_llm, post_and_hold, serve_api
from omost_renderer import constants
from omost_renderer.api import create_app
from omost_renderer.config import Settings
from openai import InternalServerError, OpenAI
from PIL import Image
from pytest_httpserver import HTTPServer
from redis import Redis
from service_support import WorkerThread, make_settings, wait_for

pytestmark = pytest.mark.redis


@pytest.fixture
def llm(httpserver: HTTPServer) -> HTTPServer:
    httpserver.expect_request("/v1/canvases", method="POST").respond_with_json(
        {"canvas": canvas_json("a lighthouse at dusk"), "code": "canvas = Canvas()"}
    )
    return httpserver


@pytest.fixture
def images_settings(redis_url: str, tmp_path: Path, llm: HTTPServer) -> Settings:
    return make_settings(
        redis_url, tmp_path / "results", llm_url=llm.url_for("/").rstrip("/"), images_steps=3
    )


@pytest.fixture
def openai_client(images_settings: Settings) -> Iterator[tuple[OpenAI, TestClient]]:
    with TestClient(create_app(images_settings)) as client:
        sdk = OpenAI(base_url=f"{client.base_url}/v1", api_key="unused", http_client=client)
        yield sdk, client


def test_openai_sdk_generates_b64_images(
    openai_client: tuple[OpenAI, TestClient],
    images_settings: Settings,
    llm: HTTPServer,
    start_worker: Callable[..., WorkerThread],
) -> None:
    sdk, _ = openai_client
    start_worker(settings_=images_settings)
    result = sdk.images.generate(
        prompt="a lighthouse", n=2, size="256x256", response_format="b64_json"
    )
    assert result.data is not None
    assert len(result.data) == 2
    image = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json or "")))
    assert image.size == (256, 256)
    assert result.data[0].revised_prompt == "a lighthouse at dusk"
    request, _ = llm.log[0]
    assert request.get_json() == {"prompt": "a lighthouse"}


def test_openai_sdk_generates_image_urls(
    openai_client: tuple[OpenAI, TestClient],
    images_settings: Settings,
    start_worker: Callable[..., WorkerThread],
) -> None:
    sdk, client = openai_client
    start_worker(settings_=images_settings)
    result = sdk.images.generate(prompt="a lighthouse", size="512x256", response_format="url")
    assert result.data is not None
    url = result.data[0].url or ""
    assert "/v1/renders/" in url
    png = client.get(url)
    assert Image.open(io.BytesIO(png.content)).size == (512, 256)


def test_llm_failure_is_a_502_in_the_envelope(
    redis_url: str, tmp_path: Path, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/v1/canvases").respond_with_data("boom", status=500)
    settings = make_settings(redis_url, tmp_path, llm_url=httpserver.url_for("/").rstrip("/"))
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/images/generations", json={"prompt": "x"})
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "llm_unavailable"
        bad_size = client.post("/v1/images/generations", json={"prompt": "x", "size": "100x7"})
        assert bad_size.status_code == 400
        assert bad_size.json()["error"]["param"] == "size"


def test_render_timeout_answers_504_and_cancels(
    redis_url: str, tmp_path: Path, llm: HTTPServer
) -> None:
    settings = make_settings(
        redis_url, tmp_path, llm_url=llm.url_for("/").rstrip("/"), images_timeout_s=0.5
    )
    with TestClient(create_app(settings)) as client:
        sdk = OpenAI(
            base_url=f"{client.base_url}/v1", api_key="unused", http_client=client, max_retries=0
        )
        with pytest.raises(InternalServerError) as raised:
            sdk.images.generate(prompt="nobody renders this")
        assert raised.value.status_code == 504


def test_empty_global_description_falls_back_to_the_prompt(
    redis_url: str,
    tmp_path: Path,
    httpserver: HTTPServer,
    start_worker: Callable[..., WorkerThread],
) -> None:
    httpserver.expect_request("/v1/canvases", method="POST").respond_with_json(
        {"canvas": canvas_json("  "), "code": "canvas = Canvas()"}
    )
    settings = make_settings(
        redis_url, tmp_path / "results", llm_url=httpserver.url_for("/").rstrip("/"), images_steps=2
    )
    start_worker(settings_=settings)
    with TestClient(create_app(settings)) as client:
        sdk = OpenAI(base_url=f"{client.base_url}/v1", api_key="unused", http_client=client)
        result = sdk.images.generate(prompt="a quiet harbour", size="64x64")
    assert result.data is not None
    assert result.data[0].revised_prompt == "a quiet harbour"


def test_client_leaving_mid_render_cancels_its_job(
    images_settings: Settings, redis_client: Redis
) -> None:
    with serve_api(images_settings) as url:
        sock = post_and_hold(url, "/v1/images/generations", {"prompt": "a lighthouse"})
        # No worker runs: the job waits in the queue while the client waits for the answer.
        wait_for(lambda: redis_client.xlen(constants.STREAM_KEY) == 1, what="the render job")
        job_id = redis_client.xrange(constants.STREAM_KEY)[0][1]["job"]
        assert redis_client.hget(constants.job_key(job_id), "status") == "queued"
        sock.close()
        wait_for(
            lambda: redis_client.hget(constants.job_key(job_id), "status") == "canceled",
            what="the job of the departed client to be canceled",
        )
        assert redis_client.xlen(constants.STREAM_KEY) == 0


def test_client_leaving_during_the_llm_call_closes_it_and_queues_nothing(
    redis_url: str, tmp_path: Path, redis_client: Redis
) -> None:
    with hanging_llm() as llm:
        settings = make_settings(redis_url, tmp_path / "results", llm_url=llm.url)
        with serve_api(settings) as url:
            sock = post_and_hold(url, "/v1/images/generations", {"prompt": "a lighthouse"})
            assert llm.entered.wait(30)
            sock.close()
            assert llm.closed.wait(30), "the LLM call was not closed"
    assert redis_client.xlen(constants.STREAM_KEY) == 0
