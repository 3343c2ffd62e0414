"""Routes of ``/v1/renders``: submit, look up, follow, cancel, fetch images and the sketch."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from omost_schema import Canvas, CanvasCodeError, ErrorResponse, debug_png, parse_code
from pydantic import Field, model_validator
from redis.exceptions import RedisError

from omost_renderer.api import route_docs
from omost_renderer.api.auth import ApiCaller, Caller, submit_as
from omost_renderer.api.edit_requests import repaint_picture, resolve_inputs
from omost_renderer.api.models import route_job
from omost_renderer.api.state import ServiceState, get_state
from omost_renderer.edits.init_images import InitImageRequest
from omost_renderer.edits.plans import EditOf
from omost_renderer.errors import ConflictError, InvalidRequestError, NotFoundError
from omost_renderer.job_queue.api_queue import JobEvent
from omost_renderer.job_queue.jobs import (
    CodeCorrection,
    JobNotes,
    JobRequest,
    JobStatus,
    JobView,
    images_of,
    job_view,
)
from omost_renderer.pipelines.rendering import RenderParams
from omost_renderer.webhooks.events import WebhookRefusedError, WebhookSpec

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/renders")

State = Annotated[ServiceState, Depends(get_state)]
_EVENT_ID = re.compile(r"^\d+-\d+$")
_MAX_IDEMPOTENCY_KEY = 255
_SSE_BLOCK_MS = 1000


class RenderRequest(RenderParams):
    """``POST /v1/renders``: a canvas (as JSON or as Omost code) and how to render it."""

    canvas: Canvas | None = None
    code: str | None = None
    #: A served model (``GET /v1/models``); unset: the default model. Not a render parameter.
    model: str | None = Field(default=None, max_length=200, exclude=True)
    webhook: WebhookSpec | None = None
    #: Edit an earlier render of the same key: repaint only the regions that changed.
    edit_of: EditOf | None = None
    #: Start from your own image (img2img, or inpaint with a mask or the local boxes).
    init_image: InitImageRequest | None = None

    @model_validator(mode="after")
    def _one_canvas(self) -> RenderRequest:
        if (self.canvas is None) == (self.code is None):
            raise ValueError("give exactly one of `canvas` (JSON) and `code` (Omost code)")
        return self

    def to_job(self) -> tuple[JobRequest, JobNotes]:
        """Resolve the canvas (parsing code leniently) and split off the render parameters.

        Returns:
            The job's request, and what lenient parsing of ``code`` corrected and warned about.

        Raises:
            InvalidRequestError: The code does not parse even leniently.
        """
        canvas = self.canvas
        notes = JobNotes()
        if canvas is None:
            try:
                parsed = parse_code(self.code or "")
            except CanvasCodeError as error:
                raise InvalidRequestError(str(error), param="code") from error
            canvas = parsed.canvas
            notes = JobNotes(
                corrections=[
                    CodeCorrection(
                        kind=fix.kind, original=fix.original, corrected=fix.corrected, line=fix.line
                    )
                    for fix in parsed.corrections
                ],
                warnings=list(parsed.warnings),
            )
        params = RenderParams.model_validate(
            self.model_dump(exclude={"canvas", "code", "webhook", "edit_of", "init_image"})
        )
        return JobRequest(canvas=canvas, params=params), notes


def _path(job_id: str) -> str:
    return f"/v1/renders/{job_id}"


async def _load(state: ServiceState, job_id: str, caller: Caller) -> dict[str, str]:
    fields = await state.queue.get(job_id)
    # Another key's job answers exactly as a job that does not exist.
    if fields is None or not caller.owns(fields):
        raise NotFoundError(f"no render job {job_id!r} (it may have expired)", param="id")
    return fields


async def _view(state: ServiceState, fields: dict[str, str]) -> JobView:
    view = job_view(fields, base_path=_path(fields["id"]))
    if view.status is JobStatus.QUEUED:
        view.queue_position = await state.queue.queue_position(fields["id"])
    return view


@router.post("", status_code=202, responses=route_docs.SUBMIT)
async def submit_render(
    body: RenderRequest,
    state: State,
    caller: ApiCaller,
    idempotency_key: Annotated[str | None, Header(max_length=_MAX_IDEMPOTENCY_KEY)] = None,
) -> JSONResponse:
    """Queue a render; the same ``Idempotency-Key`` always answers with the same job.

    The same key with a different request answers 422; a key whose job has expired is free.
    """
    job, notes = body.to_job()
    job = await route_job(state.redis, state.settings, body.model, job)
    job, fields = await resolve_inputs(
        state.store,
        lambda job_id: _load(state, job_id, caller),
        job,
        edit_of=body.edit_of,
        init_image=body.init_image,
        fields_set=body.model_fields_set,
    )
    if body.webhook is not None:
        try:  # signed with the caller's key's secret (its name is the job's `key_name`)
            fields.update(await state.webhooks.job_fields(body.webhook, caller.key_name))
        except WebhookRefusedError as error:
            raise InvalidRequestError(str(error), param="webhook.url") from None
    submission = await submit_as(state, caller, job, idempotency_key, notes, fields)
    if submission.created and (notes.corrections or notes.warnings):
        logger.info(
            "render %s: code corrected %s, warnings %s",
            submission.job_id,
            [f"{fix.original!r} -> {fix.corrected!r}" for fix in notes.corrections],
            notes.warnings,
        )
    view = await _view(state, await _load(state, submission.job_id, caller))
    return JSONResponse(
        view.model_dump(mode="json"),
        status_code=202,
        headers={"Location": _path(submission.job_id)},
    )


@router.get("/{job_id}", responses=route_docs.JOB)
async def get_render(job_id: str, state: State, caller: ApiCaller) -> JobView:
    """Status, progress, attempts, timestamps, error and result images of a job."""
    return await _view(state, await _load(state, job_id, caller))


@router.post("/{job_id}/cancel", responses=route_docs.CANCEL)
async def cancel_render(job_id: str, state: State, caller: ApiCaller) -> JobView:
    """Cancel a job: at once when queued, within one step when running."""
    await _load(state, job_id, caller)
    outcome = await state.queue.cancel(job_id)
    if outcome == "missing":
        raise NotFoundError(f"no render job {job_id!r} (it may have expired)", param="id")
    if outcome in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        raise ConflictError(f"render job {job_id!r} already {outcome}", code="already_finished")
    return await _view(state, await _load(state, job_id, caller))


@router.get("/{job_id}/images/{n}", response_class=Response, responses=route_docs.IMAGE)
async def get_image(job_id: str, n: int, state: State, caller: ApiCaller) -> Response:
    """Result image ``n`` as PNG."""
    fields = await _load(state, job_id, caller)
    for image in images_of(fields):
        if image.n == n:
            data = await anyio.to_thread.run_sync(state.store.get, image.key)
            if data is None:
                break
            return Response(data, media_type="image/png")
    raise NotFoundError(f"render job {job_id!r} has no image {n}", param="n")


@router.get("/{job_id}/sketch", response_class=Response, responses=route_docs.SKETCH)
async def get_sketch(job_id: str, state: State, caller: ApiCaller) -> Response:
    """The colour sketch of a live job's canvas, its boxes outlined and labelled (PNG).

    A job that has ended keeps no request, so it has no sketch.
    """
    raw = (await _load(state, job_id, caller)).get("request")
    if raw is None:
        raise NotFoundError(f"render job {job_id!r} has ended; its canvas is not kept", param="id")
    request = JobRequest.model_validate_json(raw)
    png = await anyio.to_thread.run_sync(
        debug_png, request.canvas, request.params.width, request.params.height
    )
    return Response(png, media_type="image/png")


@router.get("/{job_id}/mask", response_class=Response, responses=route_docs.MASK)
async def get_mask(job_id: str, state: State, caller: ApiCaller) -> Response:
    """The area a render repaints, tinted red over the labelled sketch of its canvas (PNG).

    A region edit's changed boxes (dilated and feathered), kept with its results; the whole
    canvas for any other render, while its canvas is known (live, or succeeded).
    """
    data = await repaint_picture(state.store, await _load(state, job_id, caller))
    if data is None:
        raise NotFoundError(f"render job {job_id!r} has ended; its canvas is not kept", param="id")
    return Response(data, media_type="image/png")


@router.get("/{job_id}/events", response_class=StreamingResponse, responses=route_docs.EVENTS)
async def render_events(
    job_id: str,
    request: Request,
    state: State,
    caller: ApiCaller,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Server-Sent Events of status and progress; resumes after ``Last-Event-ID``."""
    after = last_event_id or "0-0"
    if not _EVENT_ID.match(after):
        raise InvalidRequestError("Last-Event-ID must be an event id like 1700000000000-0")
    ended = JobStatus((await _load(state, job_id, caller))["status"]).is_final
    # A new connection starts with the job's latest preview, while one is kept (PREVIEW_TTL_S);
    # resuming a job that has ended needs none.
    previews_after = None if ended and last_event_id else "0-0"
    return StreamingResponse(
        _event_stream(state, request, job_id, after, previews_after, ended=ended),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _event_stream(
    state: ServiceState,
    request: Request,
    job_id: str,
    after: str,
    previews_after: str | None,
    *,
    ended: bool,
) -> AsyncIterator[str]:
    yield "retry: 1000\n\n"
    try:
        while not ended and not await request.is_disconnected():
            events, previews_after = await state.queue.events(
                job_id, after, _SSE_BLOCK_MS, previews_after=previews_after
            )
            if not events:
                fields = await state.queue.get(job_id)
                if fields is None:
                    return  # expired
                # The job may have ended after the read above came back empty: its final event
                # is in the stream now (one script wrote both), and is sent below.
                ended = JobStatus(fields["status"]).is_final
                if not ended:
                    yield ": keep-alive\n\n"
                continue
            for event in events:
                yield _sse(event)
                if event.transient:
                    continue
                after = event.id
                if event.type == "status" and JobStatus(json.loads(event.data)["status"]).is_final:
                    return
        if ended:
            async for line in _ending(state, job_id, after, previews_after):
                yield line
    except RedisError as error:
        envelope = ErrorResponse.build(
            f"event stream interrupted: {error}", "server_error", code="backend_unavailable"
        )
        yield f"event: error\ndata: {envelope.model_dump_json()}\n\n"


def _event_order(event_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = event_id.partition("-")
    return int(milliseconds), int(sequence)


async def _ending(
    state: ServiceState, job_id: str, after: str, previews_after: str | None
) -> AsyncIterator[str]:
    """Send the rest of a job that has ended, always closing with its final event.

    The event stream lingers a minute after the end (``EVENTS_LINGER_S``); after that the final
    event, copied into the job hash with its id when the job ended, is all there is to send.
    """
    while True:
        events, _ = await state.queue.events(job_id, after, None, previews_after=previews_after)
        previews_after = None  # the latest preview, once, before the final event
        for event in events:
            yield _sse(event)
        durable = [event for event in events if not event.transient]
        if not durable:
            break
        after = durable[-1].id
    fields = await state.queue.get(job_id) or {}
    final_id = fields.get("final_event_id")
    if final_id and _event_order(final_id) > _event_order(after):
        yield _sse(JobEvent(id=final_id, type="status", data=fields.get("final_event", "{}")))


def _sse(event: JobEvent) -> str:
    """Format one event; a preview has no id, so resuming never asks for it again."""
    if event.transient:
        return f"event: {event.type}\ndata: {event.data}\n\n"
    return f"id: {event.id}\nevent: {event.type}\ndata: {event.data}\n\n"
