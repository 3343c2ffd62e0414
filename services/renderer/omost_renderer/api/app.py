"""The app factory: lifespan (clients), error handlers, and the health and metrics routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from omost_schema import ErrorResponse
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException

from omost_renderer.api.images import router as images_router
from omost_renderer.api.renders import router as renders_router
from omost_renderer.api.state import ServiceState, get_state
from omost_renderer.api.web import include_web
from omost_renderer.config import Settings
from omost_renderer.errors import (
    BackendUnavailableError,
    InvalidRequestError,
    QueueFullError,
    RendererError,
)
from omost_renderer.job_queue import JobQueue, ensure_group
from omost_renderer.metrics import render_metrics
from omost_renderer.storage import build_store

logger = logging.getLogger(__name__)

health_router = APIRouter()


@health_router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@health_router.get("/ready")
async def ready(state: ServiceState = Depends(get_state)) -> dict[str, str]:  # noqa: B008
    """Readiness: Redis answers a ping."""
    await state.redis.ping()
    return {"status": "ready"}


@health_router.get("/metrics")
async def metrics(state: ServiceState = Depends(get_state)) -> Response:  # noqa: B008
    """Prometheus metrics of the queue and the workers."""
    stats = await state.queue.stats()
    return Response(render_metrics(stats), media_type="text/plain; version=0.0.4")


def _error_response(error: RendererError) -> JSONResponse:
    body = ErrorResponse.build(error.message, error.error_type, param=error.param, code=error.code)
    headers = {}
    if isinstance(error, QueueFullError):
        headers["Retry-After"] = str(error.retry_after_s)
    elif isinstance(error, BackendUnavailableError):
        headers["Retry-After"] = "1"
    return JSONResponse(body.model_dump(), status_code=error.status_code, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    """Map every error to the OpenAI envelope, in this one place."""

    async def on_renderer_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RendererError)
        return _error_response(error)

    async def on_redis_down(request: Request, error: Exception) -> JSONResponse:
        logger.warning("redis unavailable: %s", error)
        return _error_response(BackendUnavailableError("the job store (Redis) is unreachable"))

    async def on_validation(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        first = error.errors()[0] if error.errors() else {}
        location = [str(part) for part in first.get("loc", ()) if part != "body"]
        message = f"{'.'.join(location) or 'body'}: {first.get('msg', 'invalid request')}"
        return _error_response(InvalidRequestError(message, param=".".join(location) or None))

    async def on_http(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HTTPException)
        body = ErrorResponse.build(str(error.detail), "invalid_request_error", code="http_error")
        return JSONResponse(body.model_dump(), status_code=error.status_code)

    async def on_unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error_response(RendererError("internal error; see the server log"))

    app.add_exception_handler(Exception, on_unexpected)
    app.add_exception_handler(RendererError, on_renderer_error)
    app.add_exception_handler(RedisConnectionError, on_redis_down)
    app.add_exception_handler(RedisTimeoutError, on_redis_down)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)


def create_app(settings: Settings) -> FastAPI:
    """Build the API application; clients are opened by its lifespan, not here."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = Redis.from_url(
            settings.redis_url,
            decode_responses=True,
            socket_connect_timeout=2.0,
            socket_timeout=10.0,
            health_check_interval=30,
        )
        try:
            await ensure_group(redis)
        except (RedisConnectionError, RedisTimeoutError) as error:
            # Start anyway: requests answer 503 until Redis is back, then work again.
            logger.warning("redis unavailable at start-up: %s", error)
        http = httpx.AsyncClient(base_url=settings.llm_url, timeout=settings.llm_timeout_s)
        app.state.service = ServiceState(
            settings=settings,
            redis=redis,
            queue=JobQueue(redis, settings),
            store=build_store(settings),
            http=http,
        )
        try:
            yield
        finally:
            await http.aclose()
            await redis.aclose()

    app = FastAPI(title="omost-renderer", version="0.1.0", lifespan=lifespan)
    _install_error_handlers(app)
    app.include_router(health_router)
    app.include_router(renders_router)
    app.include_router(images_router)
    include_web(app, llm_url=settings.llm_url, llm_timeout_s=settings.llm_timeout_s)
    return app
