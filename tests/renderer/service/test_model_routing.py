"""Jobs go to their model's stream, and a worker claims only the jobs of the model it serves."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fake_renderer import FakeRenderer, canvas_json
from omost_renderer import constants
from omost_renderer.api.models import resolve_model, route_job, served_models
from omost_renderer.config import Settings
from omost_renderer.errors import InvalidRequestError
from omost_renderer.job_queue import JobQueue
from omost_renderer.jobs import JobRequest
from omost_renderer.pipelines.family_params import FamilyParams
from omost_renderer.rendering import RenderParams
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
        }  # fmt: skip
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
