"""``GET /v1/models``: the models live workers serve, and the routing of a job to one of them.

Each worker serves the one model it loaded (``OMOST_RENDERER_MODEL``) and says so, with its
family and the parameters it takes, in its health record. A job names a served model
(``model``); without one it goes to ``OMOST_RENDERER_DEFAULT_MODEL``, else to the only model
served, else (no worker is up yet) to the API process's own ``OMOST_RENDERER_MODEL`` (one
environment for a single-model deployment). An unknown model, or a parameter the model's
family does not take, is a 400 naming what is served or what to change.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from redis.asyncio import Redis

from omost_renderer.api import route_docs
from omost_renderer.api.state import ServiceState, get_state
from omost_renderer.config import Settings
from omost_renderer.errors import InvalidRequestError
from omost_renderer.job_queue.jobs import JobRequest
from omost_renderer.pipelines.family_params import (
    FamilyParams,
    UnsupportedParamError,
    check_family_params,
)
from omost_renderer.pipelines.rendering import RenderParams
from omost_renderer.worker.health import read_worker_health

router = APIRouter(prefix="/v1/models", tags=["models"])
State = Annotated[ServiceState, Depends(get_state)]


class ServedModel(BaseModel):
    """One model in OpenAI's model-list shape, with the family and what it takes."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "omost-renderer"
    family: str = Field(
        description="Pipeline family: `sdxl`, `flux` (FLUX.1) or `flux2` (FLUX.2 klein)."
    )
    capabilities: dict[str, Any] = Field(
        description="`cfg`: `cfg`, `guidance` (FLUX.1-dev's distilled guidance) or null"
        " (refused); `negative_prompt` and `hires`: whether they are taken."
    )
    workers: int = Field(description="Live workers serving it.")

    def family_params(self) -> FamilyParams:
        """The served model's parameters, for :func:`check_family_params`."""
        caps = self.capabilities
        cfg = caps.get("cfg")
        return FamilyParams(
            family=self.family,
            cfg=cfg if cfg in ("cfg", "guidance") else None,
            negative_prompt=bool(caps.get("negative_prompt", True)),
            hires=bool(caps.get("hires", True)),
        )


class ModelList(BaseModel):
    """``GET /v1/models``: OpenAI's list shape."""

    object: Literal["list"] = "list"
    data: list[ServedModel]


async def served_models(redis: Redis) -> list[ServedModel]:
    """The models some live worker serves, by name (workers without a model name are left out)."""
    found: dict[str, ServedModel] = {}
    for record in await read_worker_health(redis):
        name = record.get("model")
        if not isinstance(name, str):
            continue
        if name in found:
            found[name].workers += 1
            continue
        capabilities = record.get("capabilities")
        found[name] = ServedModel(
            id=name,
            created=int(float(record.get("started_at") or time.time())),
            family=str(record.get("family") or "sdxl"),
            capabilities=capabilities if isinstance(capabilities, dict) else {},
            workers=1,
        )
    return sorted(found.values(), key=lambda model: model.id)


def resolve_model(
    requested: str | None, settings: Settings, served: list[ServedModel]
) -> str | None:
    """The served model a job goes to (``None``: the stream of workers serving no named model).

    Raises:
        InvalidRequestError: The model is not served, or several are and none is named.
    """
    names = [model.id for model in served]
    if requested is not None:
        if requested in names or requested in (settings.default_model, settings.model):
            return requested
        raise InvalidRequestError(
            f"model {requested!r} is not served; served: {names or 'none yet'}",
            param="model",
            code="model_not_found",
        )
    if settings.default_model is not None:
        return settings.default_model
    if len(names) == 1:
        return names[0]
    if len(names) > 1:
        raise InvalidRequestError(
            f"several models are served ({', '.join(names)}); name one in `model`",
            param="model",
            code="model_required",
        )
    return settings.model


async def route_model(
    redis: Redis, settings: Settings, requested: str | None, params: RenderParams
) -> str | None:
    """The model a job goes to, its parameters checked against the model's family.

    Raises:
        InvalidRequestError: Unknown model, or a parameter the model's family does not take.
    """
    served = await served_models(redis)
    model = resolve_model(requested, settings, served)
    check_params(model, served, params)
    return model


async def route_job(
    redis: Redis, settings: Settings, requested: str | None, job: JobRequest
) -> JobRequest:
    """The job with its model resolved (:func:`route_model`)."""
    model = await route_model(redis, settings, requested, job.params)
    return job.model_copy(update={"model": model})


def check_params(model: str | None, served: list[ServedModel], params: RenderParams) -> None:
    """Refuse parameters that the model's family does not take (known once a worker serves it).

    Raises:
        InvalidRequestError: Naming the parameter.
    """
    for candidate in served:
        if candidate.id == model:
            try:
                check_family_params(candidate.family_params(), params)
            except UnsupportedParamError as error:
                raise InvalidRequestError(str(error), param=error.param) from error
            return


@router.get("", responses=route_docs.MODELS)
async def list_models(state: State) -> ModelList:
    """The models live workers serve, in OpenAI's list shape with family and capabilities."""
    return ModelList(data=await served_models(state.redis))
