"""The app factory: settings and backend in, FastAPI app out (nothing happens at import)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError as FastAPIValidationError
from fastapi.responses import JSONResponse
from omost_schema.api_keys import service_keys
from omost_schema.asgi_limits import BodySizeLimit
from omost_schema.rate_limits import RateLimitHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omost_llm.auth import Access, KeyLimiter
from omost_llm.config import Settings
from omost_llm.errors import (
    BadRequestError,
    InternalError,
    LLMServiceError,
    MethodNotAllowedError,
    ModelNotFoundError,
    RequestValidationError,
)
from omost_llm.metrics import Metrics
from omost_llm.protocol import Backend
from omost_llm.routes import router
from omost_llm.serving import Composer

_ROUTES = ("/v1/chat/completions", "/v1/canvases", "/v1/models", "/health", "/ready", "/metrics")


def error_response(error: LLMServiceError) -> JSONResponse:
    """The one place where a service error becomes an HTTP answer."""
    headers = dict(error.headers)
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    return JSONResponse(
        error.to_response().model_dump(mode="json"), status_code=error.status_code, headers=headers
    )


def _validation_error(exc: FastAPIValidationError) -> LLMServiceError:
    first = exc.errors()[0] if exc.errors() else {}
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    message = f"{'.'.join(location) or 'body'}: {first.get('msg', 'invalid request')}"
    if first.get("type") == "json_invalid":
        return BadRequestError(f"the body is not valid JSON: {message}", code="invalid_json")
    return RequestValidationError(message, param=".".join(location) or None)


def _http_error(exc: HTTPException) -> LLMServiceError:
    if exc.status_code == 404:
        return ModelNotFoundError(str(exc.detail))
    if exc.status_code == 405:
        error: LLMServiceError = MethodNotAllowedError(str(exc.detail))
        # Starlette names the methods the route takes; the answer keeps them.
        error.headers.update({k: v for k, v in (exc.headers or {}).items() if k.lower() == "allow"})
        return error
    return BadRequestError(str(exc.detail))


class MetricsMiddleware:
    """Count and time every answer, the body limit's 413 included."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        """Wrap ``app``."""
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in _ROUTES else "other"
        start = time.perf_counter()
        status = {"code": 500}

        async def send_counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.metrics.requests.labels(route, str(status["code"])).inc()
                self.metrics.latency.labels(route).observe(time.perf_counter() - start)

        await self.app(scope, receive, send_counted)


def create_app(settings: Settings, backend: Backend | None = None) -> FastAPI:
    """Build the service.

    Args:
        settings: The service settings, built once at start-up.
        backend: The token source; by default the one ``settings.backend`` names.

    Returns:
        The app. Its lifespan starts (warms up) the backend and closes it.
    """
    if backend is None:
        from omost_llm.backends.factory import make_backend

        backend = make_backend(settings)
    metrics = Metrics()
    composer = Composer(backend, settings, metrics)
    keys = service_keys(
        settings.api_keys.get_secret_value(),
        required=settings.require_api_keys,
        setting="OMOST_LLM_API_KEYS",
    )
    metrics_key = settings.metrics_api_key.get_secret_value() if settings.metrics_api_key else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await composer.backend.start()
        try:
            yield
        finally:
            await composer.backend.close()

    app = FastAPI(title="omost-llm", lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.composer = composer
    app.state.access = Access(keys, KeyLimiter(settings), metrics_key, metrics)
    app.state.started = int(time.time())
    app.include_router(router)

    @app.exception_handler(LLMServiceError)
    async def on_service_error(request: Request, exc: LLMServiceError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(FastAPIValidationError)
    async def on_validation_error(request: Request, exc: FastAPIValidationError) -> JSONResponse:
        return error_response(_validation_error(exc))

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(_http_error(exc))

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> JSONResponse:
        return error_response(InternalError(f"internal error: {type(exc).__name__}"))

    # The last added is the outermost: the metrics see the body limit's answers too.
    app.add_middleware(RateLimitHeaders)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
