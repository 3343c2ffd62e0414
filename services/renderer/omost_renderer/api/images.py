"""``POST /v1/images/generations``: OpenAI's Images API on top of the LLM and the render queue.

The prompt goes to the LLM service (``POST /v1/canvases``), which answers with a canvas; the
canvas is queued as a render, and the answer waits for it (up to ``images_timeout_s``). A client
that closes its connection first stops the work: the LLM call is closed, the render canceled.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from typing import Annotated, Literal

import anyio
import httpx
from fastapi import APIRouter, Depends, Header, Request
from omost_schema import Canvas
from omost_schema.json_numbers import NUMBER_ONLY
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from omost_renderer.api import route_docs
from omost_renderer.api.auth import caller_of, submit_as
from omost_renderer.api.disconnect import unless_disconnected
from omost_renderer.api.models import route_model
from omost_renderer.api.state import ServiceState, get_state
from omost_renderer.errors import (
    ClientClosedError,
    InvalidRequestError,
    RenderFailedError,
    RenderTimeoutError,
    UpstreamError,
)
from omost_renderer.job_queue.jobs import JobRequest, JobStatus, images_of
from omost_renderer.pipelines.rendering import (
    MAX_IMAGES,
    MAX_NEGATIVE_PROMPT_CHARS,
    MAX_SEED,
    MAX_SIDE,
    MAX_STEPS,
    RenderParams,
)

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/images")

State = Annotated[ServiceState, Depends(get_state)]
_MAX_IDEMPOTENCY_KEY = 255
#: The job hash field keeping the revised prompt of an Images API render.
_REVISED_PROMPT = "revised_prompt"


class ImageGenerationRequest(BaseModel):
    """OpenAI's ``images.generate`` body; fields we cannot honour (quality, style) are ignored."""

    model_config = ConfigDict(extra="ignore")

    prompt: Annotated[str, Field(min_length=1, max_length=4000)]
    #: A served model (``GET /v1/models``); unset: the default model. Others are refused.
    model: Annotated[str | None, Field(max_length=200)] = None
    n: Annotated[int, Field(ge=1, le=MAX_IMAGES)] = 1
    size: str = "1024x1024"
    response_format: Literal["url", "b64_json"] = "url"
    user: str | None = None
    # Render parameters beyond OpenAI's, sent as extra body fields (the openai SDK's
    # `extra_body`); unset: the renderer's defaults (`images_steps` for `steps`).
    seed: Annotated[int, Field(ge=0, le=MAX_SEED), NUMBER_ONLY] | None = None
    steps: Annotated[int, Field(ge=1, le=MAX_STEPS), NUMBER_ONLY] | None = None
    cfg: Annotated[float, Field(ge=0.0, le=30.0), NUMBER_ONLY] | None = None
    negative_prompt: Annotated[str, Field(max_length=MAX_NEGATIVE_PROMPT_CHARS)] | None = None

    def digest(self) -> str:
        """What an ``Idempotency-Key`` remembers this request by (its canvas is composed anew)."""
        return "images:" + hashlib.sha256(self.model_dump_json().encode()).hexdigest()


class ImageData(BaseModel):
    """One generated image."""

    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    """OpenAI's ``ImagesResponse``."""

    created: int
    data: list[ImageData]


def _parse_size(size: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in size.lower().split("x"))
    except ValueError:
        raise InvalidRequestError("size must look like 1024x1024", param="size") from None
    if not (64 <= width <= MAX_SIDE and 64 <= height <= MAX_SIDE) or width % 64 or height % 64:
        raise InvalidRequestError(
            f"width and height must be multiples of 64 within 64..{MAX_SIDE}", param="size"
        )
    return width, height


def _render_params(body: ImageGenerationRequest, steps: int) -> RenderParams:
    """The render's parameters, checked (the budget too) before the LLM is asked."""
    width, height = _parse_size(body.size)
    given = body.model_dump(include={"seed", "cfg", "negative_prompt"}, exclude_none=True)
    try:
        return RenderParams(
            width=width,
            height=height,
            num_images=body.n,
            steps=body.steps if body.steps is not None else steps,
            **given,
        )
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        raise InvalidRequestError(f"size, n and steps: {first['msg']}", param="n") from None


async def _compose(state: ServiceState, prompt: str) -> Canvas:
    """Ask the LLM service for a canvas."""
    try:
        payload: dict[str, object] = {"prompt": prompt}
        if state.settings.llm_seed is not None:
            payload["seed"] = state.settings.llm_seed
        response = await state.http.post("/v1/canvases", json=payload)
    except httpx.HTTPError as error:
        raise UpstreamError(f"the LLM service is unreachable: {error}") from error
    if response.status_code != 200:
        raise UpstreamError(f"the LLM service answered {response.status_code}: {response.text}")
    try:
        return Canvas.model_validate(response.json()["canvas"])
    except (KeyError, ValueError, ValidationError) as error:
        raise UpstreamError(f"the LLM service answered without a valid canvas: {error}") from error


async def _wait(state: ServiceState, job_id: str) -> dict[str, str]:
    """Follow the job's events until it is final; cancel it on timeout."""
    after = "0-0"
    with anyio.move_on_after(state.settings.images_timeout_s):
        while True:
            fields = await state.queue.get(job_id)
            if fields is not None and JobStatus(fields["status"]).is_final:
                return fields
            events, _ = await state.queue.events(job_id, after, 1000)
            for event in events:
                after = event.id
    await state.queue.cancel(job_id)
    raise RenderTimeoutError(f"render {job_id} did not finish in time; it was canceled")


@router.post("/generations", responses=route_docs.IMAGES)
async def generate_images(
    body: ImageGenerationRequest,
    request: Request,
    state: State,
    idempotency_key: Annotated[str | None, Header(max_length=_MAX_IDEMPOTENCY_KEY)] = None,
) -> ImagesResponse:
    """Compose a canvas for the prompt, render it and answer like OpenAI's Images API.

    The same ``Idempotency-Key`` answers with the same render (the same key with another
    request: 422). If the client disconnects first, the LLM call is closed and the render job
    canceled; its idempotency key is then forgotten, so a retry renders anew.
    """
    params = _render_params(body, state.settings.images_steps)
    jobs: list[str] = []
    try:
        return await unless_disconnected(
            request, lambda: _generate(body, request, state, params, idempotency_key, jobs)
        )
    except ClientClosedError:
        for job_id in jobs:
            outcome = await state.queue.cancel(job_id)
            await state.queue.forget_idempotency_key(job_id)
            logger.info("images request left before render %s ended: cancel %s", job_id, outcome)
        raise


async def _generate(
    body: ImageGenerationRequest,
    request: Request,
    state: ServiceState,
    params: RenderParams,
    idempotency_key: str | None,
    jobs: list[str],
) -> ImagesResponse:
    """Compose, queue and wait; a job this call queued is added to ``jobs`` at once."""
    # The model first: an unknown one is refused before the LLM is asked for a canvas.
    model = await route_model(state.redis, state.settings, body.model, params)
    canvas = await _compose(state, body.prompt)
    with anyio.CancelScope(shield=True):  # a job once queued is always known, to be canceled
        # The canvas's own summary of the image; a model may leave it empty, then the prompt
        # stands. Kept with the job, for a retry with the same idempotency key.
        revised = canvas.global_description.description.strip() or body.prompt
        submission = await submit_as(
            state,
            caller_of(request),
            JobRequest(canvas=canvas, params=params, model=model),
            f"images:{idempotency_key}" if idempotency_key else None,
            fields={_REVISED_PROMPT: revised},
            digest=body.digest(),
        )
        if submission.created:  # a retry's client leaving does not cancel the first's job
            jobs.append(submission.job_id)
    fields = await _wait(state, submission.job_id)
    if fields["status"] != JobStatus.SUCCEEDED:
        message = fields.get("error_message") or f"render {fields['status']}"
        raise RenderFailedError(message, code=fields.get("error_code") or "render_failed")
    revised = fields.get(_REVISED_PROMPT) or revised
    data: list[ImageData] = []
    for image in images_of(fields):
        if body.response_format == "url":
            url = str(request.url_for("get_image", job_id=submission.job_id, n=str(image.n)))
            data.append(ImageData(url=url, revised_prompt=revised))
            continue
        png = await anyio.to_thread.run_sync(state.store.get, image.key)
        if png is None:
            raise RenderFailedError(f"result image {image.n} of {submission.job_id} is missing")
        data.append(
            ImageData(b64_json=base64.b64encode(png).decode("ascii"), revised_prompt=revised)
        )
    return ImagesResponse(created=int(time.time()), data=data)
