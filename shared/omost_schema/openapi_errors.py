"""OpenAPI ``responses`` entries for a route's error answers, all in the OpenAI envelope.

Each service has one closed list of error classes, each with its HTTP status. A route declares the
classes it can raise, ``responses=error_responses(NotFoundError, ...)``, and its OpenAPI document
lists each status with the envelope's schema and the classes' first docstring lines: the document
follows the code instead of a hand-kept table. The dictionaries are FastAPI's ``responses`` format
(``model`` is turned into a schema reference), but nothing here imports a web framework.
"""

from __future__ import annotations

from typing import Any, Protocol

from omost_schema.errors import ErrorResponse

#: Statuses whose answers carry ``Retry-After``.
_RETRY_STATUSES = frozenset({429, 503})
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer"},
    }
}


_WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "description": "`Bearer`: the key goes in `Authorization: Bearer <key>`.",
        "schema": {"type": "string"},
    }
}


class StatusError(Protocol):
    """An error class that knows its HTTP status."""

    status_code: int


#: A route's possible error: an error class, or ``(status, description)`` for an answer made
#: outside the service's error classes (the body limit's 413, for example).
ErrorSource = type[StatusError] | tuple[int, str]


def _describe(source: ErrorSource) -> tuple[int, str]:
    if isinstance(source, tuple):
        return source
    doc = (source.__doc__ or source.__name__).strip().splitlines()[0].strip()
    return source.status_code, doc


def error_responses(*sources: ErrorSource) -> dict[int | str, dict[str, Any]]:
    """Build the ``responses`` of a route from the errors it can answer with.

    Args:
        *sources: Error classes (with ``status_code`` and a docstring) or ``(status, text)``.

    Returns:
        ``{status: {"model": ErrorResponse, "description": ...}}``, one entry per status, the
        descriptions of errors sharing a status joined; 429 and 503 document ``Retry-After``, 401
        ``WWW-Authenticate``.
    """
    descriptions: dict[int, list[str]] = {}
    for source in sources:
        status, text = _describe(source)
        if text not in descriptions.setdefault(status, []):
            descriptions[status].append(text)
    responses: dict[int | str, dict[str, Any]] = {}
    for status in sorted(descriptions):
        entry: dict[str, Any] = {
            "model": ErrorResponse,
            "description": " Or: ".join(descriptions[status]),
        }
        if status in _RETRY_STATUSES:
            entry["headers"] = _RETRY_AFTER
        elif status == 401:
            entry["headers"] = _WWW_AUTHENTICATE
        responses[status] = entry
    return responses
