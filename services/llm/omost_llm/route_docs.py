"""What each route of the LLM service answers, for its OpenAPI document.

Each route's decorator takes its entry here as ``responses=``: the success body where the route
answers a response object directly (JSON or a stream), and every error it can answer, taken from
the closed list in ``omost_llm.errors`` so that each status carries the OpenAI envelope's schema.
"""

from __future__ import annotations

from typing import Any

from omost_schema.openapi_errors import error_responses
from pydantic import BaseModel

from omost_llm.api_models import CanvasResponse, ChatCompletion, ModelList
from omost_llm.errors import (
    AnswerTooLongError,
    AuthenticationError,
    BackendResponseError,
    BackendTimeoutError,
    BackendUnavailableError,
    BadRequestError,
    ContextLengthExceededError,
    KeyRateLimitError,
    ModelNotFoundError,
    RequestTooLargeError,
    RequestValidationError,
    SaturatedError,
)

Responses = dict[int | str, dict[str, Any]]


class StatusBody(BaseModel):
    """The body of ``/health`` and ``/ready``: ``{"status": "ok"}`` or ``{"status": "ready"}``."""

    status: str


#: A missing or wrong API key, or the key's requests or tokens of this minute used up.
_KEYED = (AuthenticationError, KeyRateLimitError)
#: What any generation can fail with, once the request is valid.
_GENERATION_ERRORS = (
    AnswerTooLongError,
    SaturatedError,
    BackendResponseError,
    BackendUnavailableError,
    BackendTimeoutError,
)
#: What any request with a JSON body can fail with before it is served.
_BODY_ERRORS = (
    BadRequestError,
    ContextLengthExceededError,
    RequestTooLargeError,
    RequestValidationError,
)

#: One Server-Sent Event (before OpenAPI 3.2, an event stream's `schema` describes each event):
#: `data` is a chat completion chunk as JSON, or `[DONE]`, or an error envelope.
_EVENT_STREAM = {
    "text/event-stream": {
        "schema": {
            "type": "object",
            "properties": {"data": {"type": "string"}},
            "required": ["data"],
        }
    }
}

CHAT: Responses = {
    200: {
        "model": ChatCompletion,
        "description": "The answer as JSON, or with `stream: true` as Server-Sent Events of"
        " chat completion chunks ending with `data: [DONE]`.",
        "content": _EVENT_STREAM,
    },
    **error_responses(*_KEYED, *_BODY_ERRORS, ModelNotFoundError, *_GENERATION_ERRORS),
}
CANVASES: Responses = {
    200: {"model": CanvasResponse, "description": "The canvas, its code and what was corrected."},
    **error_responses(*_KEYED, *_BODY_ERRORS, *_GENERATION_ERRORS),
}
MODELS: Responses = {
    200: {"model": ModelList, "description": "The one model served."},
    **error_responses(*_KEYED),
}
HEALTH: Responses = {200: {"model": StatusBody, "description": "The process answers."}}
READY: Responses = {
    200: {"model": StatusBody, "description": "The backend is reachable and warmed up."},
    **error_responses(BackendUnavailableError),
}
#: With ``response_class=Response``, so that the success alone is plain text.
METRICS: Responses = {
    200: {
        "description": "Prometheus text exposition format.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
    **error_responses(AuthenticationError),
}
