"""Routes of ``/v1/renders``: submit, look up, follow, cancel, fetch images and the sketch."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from omost_schema import Canvas, CanvasCodeError, ErrorResponse, debug_png, parse_code
from pydantic import model_validator
from redis.exceptions import RedisError

from omost_renderer.api.state import ServiceState, get_state
from omost_renderer.errors import ConflictError, InvalidRequestError, NotFoundError
from omost_renderer.jobs import JobRequest, JobStatus, JobView, images_of, job_view
from omost_renderer.rendering import RenderParams

router = APIRouter(prefix="/v1/renders")

State = Annotated[ServiceState, Depends(get_state)]
_EVENT_ID = re.compile(r"^\d+-\d+$")
_MAX_IDEMPOTENCY_KEY = 255
_SSE_BLOCK_MS = 1000


class RenderRequest(RenderParams):
    """``POST /v1/renders``: a canvas (as JSON or as Omost code) and how to render it."""

    canvas: Canvas | None = None
    code: str | None = None

    @model_validator(mode="after")
    def _one_canvas(self) -> RenderRequest:
        if (self.canvas is None) == (self.code is None):
            raise ValueError("give exactly one of `canvas` (JSON) and `code` (Omost code)")
        return self

    def to_job(self) -> JobRequest:
        """Resolve the canvas (parsing code leniently) and split off the render parameters."""
        canvas = self.canvas
        if canvas is None:
            try:
                canvas = parse_code(self.code or "").canvas
            except CanvasCodeError as error:
                raise InvalidRequestError(str(error), param="code") from error
        params = RenderParams.model_validate(self.model_dump(exclude={"canvas", "code"}))
        return JobRequest(canvas=canvas, params=params)


def _path(job_id: str) -> str:
    return f"/v1/renders/{job_id}"


async def _load(state: ServiceState, job_id: str) -> dict[str, str]:
    fields = await state.queue.get(job_id)
    if fields is None:
        raise NotFoundError(f"no render job {job_id!r} (it may have expired)", param="id")
    return fields


async def _view(state: ServiceState, fields: dict[str, str]) -> JobView:
    view = job_view(fields, base_path=_path(fields["id"]))
    if view.status is JobStatus.QUEUED and fields.get("entry"):
        view.queue_position = await state.queue.queue_position(fields["entry"])
    return view


@router.post("", status_code=202)
async def submit_render(
    body: RenderRequest,
    state: State,
    idempotency_key: Annotated[str | None, Header(max_length=_MAX_IDEMPOTENCY_KEY)] = None,
) -> JSONResponse:
    """Queue a render; the same ``Idempotency-Key`` always answers with the same job."""
    submission = await state.queue.submit(body.to_job(), idempotency_key)
    view = await _view(state, await _load(state, submission.job_id))
    return JSONResponse(
        view.model_dump(mode="json"),
        status_code=202,
        headers={"Location": _path(submission.job_id)},
    )


@router.get("/{job_id}")
async def get_render(job_id: str, state: State) -> JobView:
    """Status, progress, attempts, timestamps, error and result images of a job."""
    return await _view(state, await _load(state, job_id))


@router.post("/{job_id}/cancel")
async def cancel_render(job_id: str, state: State) -> JobView:
    """Cancel a job: at once when queued, within one step when running."""
    outcome = await state.queue.cancel(job_id)
    if outcome == "missing":
        raise NotFoundError(f"no render job {job_id!r} (it may have expired)", param="id")
    if outcome in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        raise ConflictError(f"render job {job_id!r} already {outcome}", code="already_finished")
    return await _view(state, await _load(state, job_id))


@router.get("/{job_id}/images/{n}", response_class=Response)
async def get_image(job_id: str, n: int, state: State) -> Response:
    """Result image ``n`` as PNG."""
    fields = await _load(state, job_id)
    for image in images_of(fields):
        if image.n == n:
            data = await anyio.to_thread.run_sync(state.store.get, image.key)
            if data is None:
                break
            return Response(data, media_type="image/png")
    raise NotFoundError(f"render job {job_id!r} has no image {n}", param="n")


@router.get("/{job_id}/sketch", response_class=Response)
async def get_sketch(job_id: str, state: State) -> Response:
    """The colour sketch of the job's canvas with its boxes outlined and labelled (PNG)."""
    request = JobRequest.model_validate_json((await _load(state, job_id))["request"])
    png = await anyio.to_thread.run_sync(
        debug_png, request.canvas, request.params.width, request.params.height
    )
    return Response(png, media_type="image/png")


@router.get("/{job_id}/events")
async def render_events(
    job_id: str,
    request: Request,
    state: State,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Server-Sent Events of status and progress; resumes after ``Last-Event-ID``."""
    after = last_event_id or "0-0"
    if not _EVENT_ID.match(after):
        raise InvalidRequestError("Last-Event-ID must be an event id like 1700000000000-0")
    await _load(state, job_id)
    return StreamingResponse(
        _event_stream(state, request, job_id, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _event_stream(
    state: ServiceState, request: Request, job_id: str, after: str
) -> AsyncIterator[str]:
    yield "retry: 1000\n\n"
    try:
        while not await request.is_disconnected():
            events = await state.queue.events(job_id, after, _SSE_BLOCK_MS)
            if not events:
                fields = await state.queue.get(job_id)
                if fields is None or JobStatus(fields["status"]).is_final:
                    return  # expired, or resumed after the final event
                yield ": keep-alive\n\n"
                continue
            for event in events:
                after = event.id
                yield f"id: {event.id}\nevent: {event.type}\ndata: {event.data}\n\n"
                if event.type == "status" and JobStatus(json.loads(event.data)["status"]).is_final:
                    return
    except RedisError as error:
        envelope = ErrorResponse.build(
            f"event stream interrupted: {error}", "server_error", code="backend_unavailable"
        )
        yield f"event: error\ndata: {envelope.model_dump_json()}\n\n"
