"""The closed list of errors of the LLM service, each with its HTTP status and OpenAI error type.

Routes and backends raise these; one handler in ``main`` turns them into OpenAI's envelope. Nothing
else builds error JSON.
"""

from __future__ import annotations

from omost_schema import ErrorResponse


class LLMServiceError(Exception):
    """Base of every error the service answers with.

    Attributes:
        status_code: HTTP status of the answer.
        error_type: OpenAI's ``error.type``.
        message: What went wrong, for the caller.
        param: The request field at fault, when there is one.
        code: A short machine-readable reason.
        retry_after: Seconds for the ``Retry-After`` header (429 and 503 only).
    """

    status_code = 500
    error_type = "server_error"
    default_code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code
        self.retry_after = retry_after
        #: More headers of the answer (``WWW-Authenticate``, ``x-ratelimit-*``).
        self.headers: dict[str, str] = {}

    def to_response(self) -> ErrorResponse:
        """The OpenAI envelope of this error."""
        return ErrorResponse.build(self.message, self.error_type, param=self.param, code=self.code)


class BadRequestError(LLMServiceError):
    """The request is malformed or asks for something not supported (400)."""

    status_code = 400
    error_type = "invalid_request_error"
    default_code = "bad_request"


class MethodNotAllowedError(LLMServiceError):
    """The route exists but not for this HTTP method (405, with ``Allow``)."""

    status_code = 405
    error_type = "invalid_request_error"
    default_code = "method_not_allowed"


class ContextLengthExceededError(BadRequestError):
    """Even shortened, the conversation leaves no room for an answer in the context (400)."""

    default_code = "context_length_exceeded"


class ClientDisconnectedError(LLMServiceError):
    """The client closed its connection before the answer; the generation was cancelled (499).

    Nobody receives this answer: it exists so that the request is logged and counted.
    """

    status_code = 499
    error_type = "invalid_request_error"
    default_code = "client_disconnected"


class RequestValidationError(LLMServiceError):
    """A field has the wrong type or is out of range (422)."""

    status_code = 422
    error_type = "invalid_request_error"
    default_code = "invalid_value"


class RequestTooLargeError(LLMServiceError):
    """The body is larger than the configured limit (413)."""

    status_code = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"


class ModelNotFoundError(LLMServiceError):
    """The route does not exist (404)."""

    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class AnswerTooLongError(LLMServiceError):
    """The canvas did not fit in ``max_tokens`` (the model stopped for length) (422)."""

    status_code = 422
    error_type = "invalid_request_error"
    default_code = "max_tokens_exhausted"


class AuthenticationError(LLMServiceError):
    """The API key is missing or wrong (`Authorization: Bearer <key>`) (401)."""

    status_code = 401
    error_type = "invalid_request_error"
    default_code = "invalid_api_key"


class KeyRateLimitError(LLMServiceError):
    """The API key used its requests or tokens of this minute (429)."""

    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class SaturatedError(LLMServiceError):
    """Too many requests are running or waiting, here or upstream (429)."""

    status_code = 429
    error_type = "rate_limit_error"
    default_code = "saturated"


class BackendUnavailableError(LLMServiceError):
    """The backend cannot be reached or is not ready (503)."""

    status_code = 503
    error_type = "server_error"
    default_code = "backend_unavailable"


class BackendResponseError(LLMServiceError):
    """The backend answered something that is not a valid canvas, even after a retry (502)."""

    status_code = 502
    error_type = "server_error"
    default_code = "invalid_backend_output"


class BackendTimeoutError(LLMServiceError):
    """The backend took longer than the configured time limit (504)."""

    status_code = 504
    error_type = "server_error"
    default_code = "backend_timeout"


class InternalError(LLMServiceError):
    """A bug in the service (500)."""
