"""Jobs go to their model's stream, and a worker claims only the jobs of the model it serves."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fake_renderer import FakeRenderer, canvas_json
from fastapi.testclient import TestClient
from omost_renderer.api import create_app
from omost_renderer.api.models import resolve_model, route_job, served_models
from omost_renderer.config import Settings
from omost_renderer.errors import InvalidRequestError
from omost_renderer.job_queue import constants
from omost_renderer.job_queue.api_queue import JobQueue
from omost_renderer.job_queue.jobs import JobRequest
from omost_renderer.pipelines.family_params import FamilyParams
from omost_renderer.pipelines.rendering import RenderParams
from openai import BadRequestError, OpenAI
from PIL import Image
from pytest_httpserver import HTTPServer
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from service_support import WorkerThread, make_settings, wait_for

pytestmark = pytest.mark.redis


class SchnellLike(FakeRenderer):
    """A fake renderer that says it is a FLUX model without guidance."""

    family_params = FamilyParams(family="flux", cfg=None, negative_prompt=False)


def _request(model: str | None, **params: object) -> JobRequest:
    return JobRequest.model_validate(
        {
            "canvas": canvas_json(),
            "params": RenderParams(width=64, height=64, steps=2, **params),
            "model": model,
        }
    )


async def _submit(settings: Settings, *requests: JobRequest) -> list[str]:
    client = AsyncRedis.from_url(settings.redis_url, decode_responses=True)
    try:
        queue = JobQueue(client, settings)
        return [(await queue.submit(request)).job_id for request in requests]
    finally:
        await client.aclose()


def _field(redis: Redis, job_id: str, name: str) -> str:
    return str(redis.hget(constants.job_key(job_id), name))


def test_each_worker_claims_only_the_jobs_of_its_model(
    redis_url: str, tmp_path: Path, redis_client: Redis, start_worker: Callable[..., WorkerThread]
) -> None:
    sdxl = make_settings(redis_url, tmp_path / "r", model="tiny")
    flux = make_settings(redis_url, tmp_path / "r", model="tiny-flux")
    start_worker(FakeRenderer(), sdxl, name="sdxl-worker")
    start_worker(SchnellLike(), flux, name="flux-worker")
    jobs = asyncio.run(_submit(sdxl, *(_request(m) for m in ("tiny", "tiny-flux") * 3)))
    wait_for(lambda: all(_field(redis_client, j, "status") == "succeeded" for j in jobs))
    workers = [_field(redis_client, j, "worker") for j in jobs]
    assert workers == ["sdxl-worker", "flux-worker"] * 3
    assert redis_client.smembers(constants.MODELS_KEY) == {"tiny", "tiny-flux"}


def test_served_models_come_from_live_workers_with_family_and_capabilities(
    redis_url: str, tmp_path: Path, start_worker: Callable[..., WorkerThread]
) -> None:
    flux = make_settings(redis_url, tmp_path / "r", model="tiny-flux")
    start_worker(SchnellLike(), flux, name="flux-1")
    start_worker(SchnellLike(), flux, name="flux-2")

    async def listed() -> list[dict[str, object]]:
        client = AsyncRedis.from_url(redis_url, decode_responses=True)
        try:
            return [m.model_dump() for m in await served_models(client)]
        finally:
            await client.aclose()

    found: list[dict[str, object]] = []

    def both_alive() -> bool:
        found[:] = asyncio.run(listed())
        return bool(found) and found[0]["workers"] == 2

    wait_for(both_alive, what="two workers' health records")
    assert found[0]["id"] == "tiny-flux"
    assert found[0]["object"] == "model"
    assert found[0]["family"] == "flux"
    assert found[0]["capabilities"] == {"cfg": None, "negative_prompt": False, "hires": True}

    async def route(**params: object) -> JobRequest:
        client = AsyncRedis.from_url(redis_url, decode_responses=True)
        try:
            return await route_job(client, flux, None, _request(None, **params))
        finally:
            await client.aclose()

    assert asyncio.run(route()).model == "tiny-flux"
    with pytest.raises(InvalidRequestError) as error:
        asyncio.run(route(cfg=3.0))
    assert error.value.param == "cfg"
    with pytest.raises(InvalidRequestError) as error:
        asyncio.run(route(negative_prompt="blurry"))
    assert error.value.param == "negative_prompt"


def _served(*names: str) -> list[object]:
    from omost_renderer.api.models import ServedModel

    return [ServedModel(id=n, created=0, family="sdxl", capabilities={}, workers=1) for n in names]


def test_resolve_model_default_only_served_or_unknown() -> None:
    plain = Settings()
    assert resolve_model(None, plain, _served("tiny")) == "tiny"  # type: ignore[arg-type]
    assert resolve_model("b", plain, _served("a", "b")) == "b"  # type: ignore[arg-type]
    with_default = Settings(default_model="a")
    assert resolve_model(None, with_default, _served("a", "b")) == "a"  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="several models") as error:
        resolve_model(None, plain, _served("a", "b"))  # type: ignore[arg-type]
    assert error.value.param == "model"
    with pytest.raises(InvalidRequestError, match=r"served: \['a', 'b'\]") as error:
        resolve_model("dall-e-3", plain, _served("a", "b"))  # type: ignore[arg-type]
    assert error.value.code == "model_not_found"
    # No worker up yet: the default model, else the API's own model, else the unnamed stream.
    assert resolve_model(None, Settings(model="tiny"), []) == "tiny"
    assert resolve_model(None, plain, []) is None
    assert json.loads(_request("x").model_dump_json())["model"] == "x"


#: Each family's tiny model and the worker that serves it.
WORKERS = {"tiny": "sdxl-worker", "tiny-flux": "flux-worker", "tiny-flux2": "flux2-worker"}


@pytest.fixture
def every_family(
    redis_url: str, tmp_path: Path, start_worker: Callable[..., WorkerThread]
) -> Settings:
    """Workers of the tiny SDXL, FLUX.1 and FLUX.2 pipelines, each serving its own model."""
    from omost_renderer.pipelines.flux.tiny import build_tiny_flux
    from omost_renderer.pipelines.flux2.tiny import build_tiny_flux2
    from omost_renderer.pipelines.sdxl.tiny import build_tiny_renderer

    sdxl = make_settings(redis_url, tmp_path / "r", model="tiny")
    flux = make_settings(redis_url, tmp_path / "r", model="tiny-flux")
    flux2 = make_settings(redis_url, tmp_path / "r", model="tiny-flux2")
    start_worker(build_tiny_renderer(), sdxl, name=WORKERS["tiny"])
    start_worker(build_tiny_flux(guidance=False), flux, name=WORKERS["tiny-flux"])
    start_worker(build_tiny_flux2(), flux2, name=WORKERS["tiny-flux2"])
    return sdxl


def _wait_models(client: TestClient, count: int) -> list[dict[str, object]]:
    listed: list[dict[str, object]] = []

    def served() -> bool:
        answer = client.get("/v1/models").json()
        assert answer["object"] == "list"
        listed[:] = answer["data"]
        return len(listed) == count

    wait_for(served, what="the workers' models")
    return listed


def test_every_family_renders_through_the_service_by_model(
    every_family: Settings, redis_client: Redis
) -> None:
    with TestClient(create_app(every_family)) as client:
        listed = _wait_models(client, 3)
        assert [(m["id"], m["family"]) for m in listed] == [
            ("tiny", "sdxl"),
            ("tiny-flux", "flux"),
            ("tiny-flux2", "flux2"),
        ]
        for caps in (listed[1]["capabilities"], listed[2]["capabilities"]):
            assert caps == {"cfg": None, "negative_prompt": False, "hires": True}
        body = {"canvas": canvas_json(), "width": 64, "height": 64, "steps": 2}
        answers = {m: client.post("/v1/renders", json={**body, "model": m}) for m in WORKERS}
        ids: dict[str, str] = {m: str(a.json()["id"]) for m, a in answers.items()}
        for model, job_id in ids.items():

            def succeeded(job: str = job_id) -> bool:
                return _field(redis_client, job, "status") == "succeeded"

            wait_for(succeeded)
            png = client.get(f"/v1/renders/{job_id}/images/0")
            assert png.content.startswith(b"\x89PNG")
            assert Image.open(io.BytesIO(png.content)).size == (64, 64)
            assert _field(redis_client, job_id, "worker") == WORKERS[model]

        unknown = client.post("/v1/renders", json={**body, "model": "dall-e-3"})
        assert unknown.status_code == 400
        error = unknown.json()["error"]
        assert error["param"] == "model"
        assert "tiny-flux2" in error["message"]
        # Several models and no default: a job must name one.
        assert client.post("/v1/renders", json=body).json()["error"]["code"] == "model_required"
        for model in ("tiny-flux", "tiny-flux2"):
            refused = client.post("/v1/renders", json={**body, "model": model, "cfg": 4.0})
            assert refused.status_code == 400
            assert refused.json()["error"]["param"] == "cfg"
        negative = {**body, "model": "tiny-flux2", "negative_prompt": "blurry"}
        assert client.post("/v1/renders", json=negative).json()["error"]["param"] == (
            "negative_prompt"
        )


def test_images_api_takes_model(
    every_family: Settings, httpserver: HTTPServer, redis_client: Redis
) -> None:
    httpserver.expect_request("/v1/canvases", method="POST").respond_with_json(
        {"canvas": canvas_json("a lighthouse at dusk"), "code": "canvas = Canvas()"}
    )
    settings = every_family.model_copy(
        update={"llm_url": httpserver.url_for("/").rstrip("/"), "images_steps": 2}
    )
    with TestClient(create_app(settings)) as client:
        _wait_models(client, 3)
        sdk = OpenAI(base_url=f"{client.base_url}/v1", api_key="unused", http_client=client)
        for model in ("tiny-flux", "tiny-flux2"):
            before = set(redis_client.scan_iter(f"{constants.JOB_KEY_PREFIX}*"))
            result = sdk.images.generate(
                model=model, prompt="a lighthouse", size="64x64", response_format="b64_json"
            )
            assert result.data is not None
            image = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json or "")))
            assert image.size == (64, 64)
            # The model reached the job: the worker of that model rendered it.
            (job,) = set(redis_client.scan_iter(f"{constants.JOB_KEY_PREFIX}*")) - before
            assert redis_client.hget(job, "worker") == WORKERS[model]
        asked = len(httpserver.log)
        with pytest.raises(BadRequestError, match="not served"):
            sdk.images.generate(model="dall-e-3", prompt="a lighthouse", size="64x64")
        # Refused before the LLM was asked for a canvas.
        assert len(httpserver.log) == asked
