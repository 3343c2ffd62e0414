"""The closed list of the renderer service's errors, each with its HTTP status and OpenAI type.

Routes raise these; one handler in ``api.app`` turns them into the OpenAI error envelope. The
worker-only errors (``JobCanceledError``, ``FencedOutError``, ``JobReleasedError``,
``ConfigurationError``) stay inside.
"""

from __future__ import annotations


class RendererError(Exception):
    """Base of every error the API answers with.

    Attributes:
        status_code: HTTP status of the answer.
        error_type: OpenAI ``error.type``.
        code: Machine-readable ``error.code``.
        param: The request field at fault, when there is one.
        headers: Headers of the answer beyond the envelope's (``WWW-Authenticate``, limits).
    """

    status_code = 500
    error_type = "server_error"
    code = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers: dict[str, str] = {}
        if code is not None:
            self.code = code


class AuthenticationError(RendererError):
    """The API key is missing or wrong (`Authorization: Bearer <key>`)."""

    status_code = 401
    error_type = "invalid_request_error"
    code = "invalid_api_key"


class RateLimitError(RendererError):
    """A per-key limit is reached (requests a minute, jobs at once, or the daily budget)."""

    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_s: int, headers: dict[str, str]) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.headers = {**headers, "Retry-After": str(retry_after_s)}


class InvalidRequestError(RendererError):
    """The request cannot be rendered as given (bad canvas, code or parameters)."""

    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class NotFoundError(RendererError):
    """No such job (never existed, or expired), or no such image."""

    status_code = 404
    error_type = "invalid_request_error"
    code = "not_found"


class ConflictError(RendererError):
    """The job is in a state where the operation makes no sense (e.g. cancel a finished job)."""

    status_code = 409
    error_type = "invalid_request_error"
    code = "conflict"


class IdempotencyKeyReusedError(RendererError):
    """The ``Idempotency-Key`` was used before with a different request."""

    status_code = 422
    error_type = "invalid_request_error"
    code = "idempotency_key_reused"


class QueueFullError(RendererError):
    """The backlog reached its limit; the client should retry after ``retry_after_s``."""

    status_code = 503
    error_type = "server_error"
    code = "queue_full"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BackendUnavailableError(RendererError):
    """Redis (or the result store) cannot be reached right now."""

    status_code = 503
    error_type = "server_error"
    code = "backend_unavailable"


class StoreFullError(RendererError):
    """Redis is at ``maxmemory`` and refuses writes; the client should retry later."""

    status_code = 503
    error_type = "server_error"
    code = "store_full"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ClientClosedError(RendererError):
    """The client closed its connection before the answer was ready (nginx's 499)."""

    status_code = 499
    error_type = "invalid_request_error"
    code = "client_closed"


class UpstreamError(RendererError):
    """The LLM service failed to compose a canvas."""

    status_code = 502
    error_type = "server_error"
    code = "llm_unavailable"


class RenderFailedError(RendererError):
    """A render made for ``/v1/images/generations`` failed or was canceled."""

    status_code = 500
    error_type = "server_error"
    code = "render_failed"


class RenderTimeoutError(RendererError):
    """A render made for ``/v1/images/generations`` did not finish in time."""

    status_code = 504
    error_type = "server_error"
    code = "timeout"


class JobCanceledError(Exception):
    """Raised from the step callback when the running job was canceled."""


class FencedOutError(Exception):
    """Raised when a newer attempt owns the job: this worker must drop its work."""


class JobReleasedError(Exception):
    """Raised from the step callback when the worker shuts down and hands the job back."""


class ConfigurationError(Exception):
    """A worker cannot start with its settings (no model named); it exits with a message."""
