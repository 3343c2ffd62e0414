"""Who may use the renderer API: the API-key dependency, job ownership and quota admission.

Every ``/v1/*`` route and the ``/llm/*`` proxy depend on :func:`authenticate`: with keys
configured (``api_keys``), a request needs ``Authorization: Bearer <key>``, is counted against its
key's requests a minute, and carries the key's name (logs, the job record's ``key_name``). A job
belongs to the key that made it: another key is answered 404 for it, as if it did not exist. Keys
named alike (a rotation) are one caller. Without keys the API is open and has no quotas.
"""

from __future__ import annotations

import hmac
import logging
import uuid
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from omost_schema.api_keys import (
    UNAUTHORIZED_HEADERS,
    KeyRing,
    bearer_token,
    unauthorized_message,
)
from omost_schema.rate_limits import LimitState, record

from omost_renderer.api.state import ServiceState, get_state
from omost_renderer.errors import AuthenticationError, RateLimitError
from omost_renderer.job_queue.api_queue import Submission
from omost_renderer.job_queue.jobs import JobNotes, JobRequest

logger = logging.getLogger(__name__)

#: ``key_name`` of jobs made while the API is open (no keys configured).
OPEN_KEY_NAME = "anonymous"
#: The job hash field naming the key that made the job.
KEY_NAME_FIELD = "key_name"


@dataclass
class Caller:
    """Who sent a request: a key's name, or ``None`` when the API is open.

    Attributes:
        name: The key's name (never the key).
        limits: The request's ASGI state, where the limits it was counted against are kept
            for the answer's ``x-ratelimit-*`` headers.
    """

    name: str | None
    limits: dict[str, object] = field(default_factory=dict)

    @property
    def key_name(self) -> str:
        """The name written into job records and logs."""
        return self.name or OPEN_KEY_NAME

    def owns(self, fields: dict[str, str]) -> bool:
        """Whether the job with hash ``fields`` is this caller's (any job, when open)."""
        if self.name is None:
            return True
        return hmac.compare_digest(fields.get(KEY_NAME_FIELD, ""), self.name)

    def record(self, states: list[LimitState]) -> None:
        """Keep limit states for the answer's headers."""
        record(self.limits, states)


def _unauthorized(code: str) -> AuthenticationError:
    error = AuthenticationError(unauthorized_message(code), code=code)
    error.headers = dict(UNAUTHORIZED_HEADERS)
    return error


async def authenticate(request: Request) -> Caller:
    """FastAPI dependency: check the request's API key and count it against its quota.

    Raises:
        AuthenticationError: Keys are configured and the request's is missing or wrong (401).
        RateLimitError: The key has used its requests of this minute (429).
    """
    # The keys are the app's from its factory (no client needed: an open API checks nothing).
    keys: KeyRing = request.app.state.keys
    scope_state = request.scope.setdefault("state", {})
    if keys.is_open:
        return Caller(None, scope_state)
    state = get_state(request)
    name, code = keys.authenticate(request.headers.get("authorization"))
    if name is None:
        assert code is not None
        # Never the key itself: only what was wrong with it.
        logger.info("refused %s %s: %s", request.method, request.url.path, code)
        raise _unauthorized(code)
    caller = Caller(name, scope_state)
    request.state.key_name = name  # for the request's log lines and job records
    try:
        caller.record(await state.quotas.count_request(name))
    except RateLimitError:
        logger.info("key %s over its requests a minute: %s refused", name, request.url.path)
        raise
    return caller


ApiCaller = Annotated[Caller, Depends(authenticate)]


def caller_of(request: Request) -> Caller:
    """The caller :func:`authenticate` found for ``request`` (which it must have run for)."""
    scope_state = request.scope.setdefault("state", {})
    name = scope_state.get("key_name")
    return Caller(name if isinstance(name, str) else None, scope_state)


async def authenticate_metrics(request: Request) -> None:
    """FastAPI dependency of ``/metrics``: its own key when ``metrics_api_key`` is set."""
    expected = get_state(request).settings.metrics_api_key
    if expected is None:
        return
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise _unauthorized("missing_api_key")
    if not hmac.compare_digest(token.encode(), expected.get_secret_value().encode()):
        raise _unauthorized("invalid_api_key")


async def submit_as(
    state: ServiceState,
    caller: Caller,
    request: JobRequest,
    idempotency_key: str | None = None,
    notes: JobNotes | None = None,
    fields: dict[str, str] | None = None,
    digest: str | None = None,
) -> Submission:
    """Queue a job for ``caller``: within its quotas, recorded as its own.

    Idempotency keys are the caller's own: the same key sent by another API key is another key.

    Args:
        state: The service state.
        caller: Who asks.
        request: What to render.
        idempotency_key: The client's ``Idempotency-Key``, if any.
        notes: Corrections and warnings of parsing the request's code.
        fields: More fields of the job hash.
        digest: What the idempotency key remembers the request by (see ``JobQueue.submit``).

    Raises:
        RateLimitError: The key has as many jobs live as it may, or its daily budget lacks
            room for this job (nothing is queued).
    """
    job_fields = {**(fields or {}), KEY_NAME_FIELD: caller.key_name}
    scoped = idempotency_key
    if caller.name is not None and idempotency_key is not None:
        scoped = f"{caller.name}:{idempotency_key}"
    if caller.name is None:
        return await state.queue.submit(request, scoped, notes, job_fields, digest)
    job_id = uuid.uuid4().hex
    cost = request.params.pixel_steps()
    try:
        states = await state.quotas.admit_job(caller.name, job_id, cost)
    except RateLimitError as error:
        logger.info("key %s: render refused: %s", caller.name, error.message)
        raise
    try:
        submission = await state.queue.submit(
            request, scoped, notes, job_fields, digest, job_id=job_id
        )
    except BaseException:
        await state.quotas.release_job(caller.name, job_id, cost)
        raise
    if not submission.created:
        # An earlier job answers (its Idempotency-Key): this admission is given back, and the
        # limit headers, which counted it, are left out.
        await state.quotas.release_job(caller.name, job_id, cost)
    else:
        logger.info("render %s queued for key %s (%d pixel-steps)", job_id, caller.name, cost)
        caller.record(states)
    return submission
