"""What each route of the renderer API answers, for its OpenAPI document.

Each route's decorator takes its entry here as ``responses=``: the success body where the route
answers a response object directly (JSON, PNG or an event stream), and every error it can answer,
taken from the closed list in ``omost_renderer.errors`` so that each status carries the OpenAI
envelope's schema. Invalid input answers 400 here (never FastAPI's default 422).
"""

from __future__ import annotations

from typing import Any

from omost_schema.asgi_limits import TOO_LARGE_DOC
from omost_schema.openapi_errors import error_responses

from omost_renderer.errors import (
    AuthenticationError,
    BackendUnavailableError,
    ConflictError,
    IdempotencyKeyReusedError,
    InvalidRequestError,
    NotFoundError,
    QueueFullError,
    RateLimitError,
    RenderFailedError,
    RenderTimeoutError,
    StoreFullError,
    UpstreamError,
)
from omost_renderer.job_queue.jobs import JobView

Responses = dict[int | str, dict[str, Any]]

_PNG = {"image/png": {"schema": {"type": "string", "contentMediaType": "image/png"}}}
_JOB_VIEW = {"model": JobView, "description": "The job: status, progress, attempts, images."}
#: A missing or wrong API key, or a per-key limit reached: on every `/v1/*` route.
_KEYED = (AuthenticationError, RateLimitError)
#: No such job (or another key's), or Redis unreachable: on every route that reads a job.
_READ = (*_KEYED, NotFoundError, BackendUnavailableError)
#: Redis unreachable or full (it refuses writes at `maxmemory`), on every route that writes.
_WRITE = (BackendUnavailableError, StoreFullError)

#: One Server-Sent Event (before OpenAPI 3.2, an event stream's `schema` describes each event):
#: `status` and `progress` carry JSON in `data` and an `id` to resume after; previews have none.
_EVENT = {
    "type": "object",
    "properties": {
        "event": {"enum": ["status", "progress", "error"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "id": {"type": "string", "pattern": "^[0-9]+-[0-9]+$"},
        "retry": {"type": "integer"},
    },
}
_JOB = "#/paths/~1v1~1renders~1{job_id}"
_JOB_ID = {"job_id": "$response.body#/id"}
#: OpenAPI links from a submit's answer to the job's routes (client generators and stateful
#: API tests follow them).
_JOB_LINKS = {
    "GetRender": {"operationRef": f"{_JOB}/get", "parameters": _JOB_ID},
    "CancelRender": {"operationRef": f"{_JOB}~1cancel/post", "parameters": _JOB_ID},
    "RenderEvents": {"operationRef": f"{_JOB}~1events/get", "parameters": _JOB_ID},
    "RenderSketch": {"operationRef": f"{_JOB}~1sketch/get", "parameters": _JOB_ID},
}

SUBMIT: Responses = {
    202: {
        **_JOB_VIEW,
        "headers": {"Location": {"description": "The job's URL.", "schema": {"type": "string"}}},
        "links": _JOB_LINKS,
    },
    **error_responses(
        *_KEYED,
        InvalidRequestError,
        TOO_LARGE_DOC,
        IdempotencyKeyReusedError,
        QueueFullError,
        # `edit_of`: the base render is unknown (or another key's), or has not succeeded.
        NotFoundError,
        ConflictError,
        *_WRITE,
    ),
}
JOB: Responses = error_responses(*_READ)
CANCEL: Responses = error_responses(*_READ, ConflictError, StoreFullError)
IMAGE: Responses = {
    200: {"description": "The result image as PNG.", "content": _PNG},
    **error_responses(InvalidRequestError, *_READ),
}
SKETCH: Responses = {
    200: {"description": "The colour sketch with its boxes labelled, as PNG.", "content": _PNG},
    **error_responses(*_READ),
}
MASK: Responses = {
    200: {"description": "The area the render repaints over its sketch, as PNG.", "content": _PNG},
    **error_responses(*_READ),
}
EVENTS: Responses = {
    200: {
        "description": "Server-Sent Events (`status`, `progress`), ending after the final status.",
        "content": {"text/event-stream": {"schema": _EVENT}},
    },
    **error_responses(InvalidRequestError, *_READ),
}
IMAGES: Responses = error_responses(
    *_KEYED,
    InvalidRequestError,
    TOO_LARGE_DOC,
    RenderFailedError,
    UpstreamError,
    QueueFullError,
    *_WRITE,
    RenderTimeoutError,
    IdempotencyKeyReusedError,
)
VALIDATE: Responses = error_responses(*_KEYED, InvalidRequestError, TOO_LARGE_DOC)
VOCABULARY: Responses = error_responses(*_KEYED)
MODELS: Responses = error_responses(*_KEYED)
READY: Responses = error_responses(BackendUnavailableError)
#: With ``response_class=Response``: FastAPI would document an error under a plain-text route's
#: own media type, so the text/plain success is declared here and the errors stay JSON.
METRICS: Responses = {
    200: {
        "description": "Prometheus text exposition format.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
    **error_responses(AuthenticationError, BackendUnavailableError),
}
