from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fake_renderer import FakeRenderer, canvas_json
from fastapi.testclient import TestClient
from live_server import hanging_llm, post_and_hold, serve_api
from omost_renderer.api import create_app
from omost_renderer.config import Settings
from omost_renderer.job_queue import constants
from omost_renderer.pipelines.rendering import RenderedImage, RenderParams, StepCallback
from omost_schema import Canvas
from openai import BadRequestError, InternalServerError, OpenAI, UnprocessableEntityError
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


class RecordingRenderer(FakeRenderer):
    """The fake renderer, keeping the parameters of every render."""

    def __init__(self) -> None:
        super().__init__()
        self.params: list[RenderParams] = []

    def render(
        self, canvas: Canvas, params: RenderParams, on_step: StepCallback | None = None
    ) -> list[RenderedImage]:
        self.params.append(params)
        return super().render(canvas, params, on_step)


def test_extra_body_render_parameters_reach_the_render(
    openai_client: tuple[OpenAI, TestClient],
    images_settings: Settings,
    start_worker: Callable[..., WorkerThread],
) -> None:
    sdk, client = openai_client
    renderer = RecordingRenderer()
    start_worker(renderer, settings_=images_settings)
    extra = {"seed": 4242, "steps": 5, "cfg": 2.5, "negative_prompt": "blurry, text"}
    result = sdk.images.generate(prompt="a lighthouse", size="128x128", extra_body=extra)
    (params,) = renderer.params
    assert (params.seed, params.steps, params.cfg) == (4242, 5, 2.5)
    assert params.negative_prompt == "blurry, text"
    assert (params.width, params.height) == (128, 128)
    assert result.data is not None
    job = client.get((result.data[0].url or "").rsplit("/images/", 1)[0]).json()
    assert job["images"][0]["seed"] == 4242


def test_extra_body_render_parameters_are_checked(
    openai_client: tuple[OpenAI, TestClient], llm: HTTPServer
) -> None:
    sdk, _ = openai_client
    for extra in ({"steps": 0}, {"seed": -1}, {"cfg": "high"}, {"steps": True}):
        with pytest.raises(BadRequestError):
            sdk.images.generate(prompt="a lighthouse", extra_body=extra)
    assert llm.log == []  # refused before the LLM was asked


def test_idempotency_key_answers_with_the_same_render(
    openai_client: tuple[OpenAI, TestClient],
    images_settings: Settings,
    start_worker: Callable[..., WorkerThread],
) -> None:
    sdk, _ = openai_client
    renderer = RecordingRenderer()
    start_worker(renderer, settings_=images_settings)
    headers = {"Idempotency-Key": "order-17"}
    first = sdk.images.generate(prompt="a lighthouse", size="64x64", extra_headers=headers)
    again = sdk.images.generate(prompt="a lighthouse", size="64x64", extra_headers=headers)
    assert first.data is not None
    assert again.data is not None
    assert again.data[0].url == first.data[0].url
    assert again.data[0].revised_prompt == first.data[0].revised_prompt
    assert len(renderer.params) == 1
    with pytest.raises(UnprocessableEntityError):
        sdk.images.generate(prompt="another prompt", size="64x64", extra_headers=headers)


def test_a_client_leaving_frees_its_idempotency_key(
    images_settings: Settings, redis_client: Redis
) -> None:
    with serve_api(images_settings) as url:
        sock = post_and_hold(
            url,
            "/v1/images/generations",
            {"prompt": "a lighthouse"},
            headers={"Idempotency-Key": "k-1"},
        )
        wait_for(lambda: redis_client.xlen(constants.STREAM_KEY) == 1, what="the render job")
        job_id = redis_client.xrange(constants.STREAM_KEY)[0][1]["job"]
        assert redis_client.keys(f"{constants.IDEMPOTENCY_KEY_PREFIX}*")
        sock.close()
        wait_for(
            lambda: redis_client.hget(constants.job_key(job_id), "status") == "canceled",
            what="the job of the departed client to be canceled",
        )
        wait_for(
            lambda: not redis_client.keys(f"{constants.IDEMPOTENCY_KEY_PREFIX}*"),
            what="its idempotency key to be forgotten",
        )
