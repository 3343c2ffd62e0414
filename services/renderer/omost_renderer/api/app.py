"""The app factory: lifespan (clients), error handlers, body limit, health and metrics routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from omost_schema import ErrorResponse
from omost_schema.api_keys import service_keys
from omost_schema.asgi_limits import BodySizeLimit
from omost_schema.rate_limits import RateLimitHeaders
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException

from omost_renderer.api import route_docs
from omost_renderer.api.auth import authenticate, authenticate_metrics
from omost_renderer.api.images import router as images_router
from omost_renderer.api.models import router as models_router
from omost_renderer.api.renders import router as renders_router
from omost_renderer.api.state import ServiceState, get_state
from omost_renderer.api.web import include_web
from omost_renderer.config import Settings
from omost_renderer.errors import (
    BackendUnavailableError,
    InvalidRequestError,
    QueueFullError,
    RendererError,
    StoreFullError,
)
from omost_renderer.job_queue.api_queue import JobQueue, ensure_group
from omost_renderer.job_queue.quotas import KeyQuotas
from omost_renderer.metrics import render_metrics
from omost_renderer.storage.stores import build_store
from omost_renderer.webhooks.dispatch import (
    WebhookDispatcher,
    ensure_webhook_group,
    webhook_consumer_name,
)
from omost_renderer.webhooks.events import URLPolicy, WebhookAdmission
from omost_renderer.worker.health import ReadyResponse, readiness

logger = logging.getLogger(__name__)

health_router = APIRouter()


@health_router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@health_router.get("/ready", responses=route_docs.READY)
async def ready(state: ServiceState = Depends(get_state)) -> ReadyResponse:  # noqa: B008
    """Readiness: Redis answers; failures the live workers report are listed (`degraded`)."""
    await state.redis.ping()
    return await readiness(state.redis)


@health_router.get(
    "/metrics",
    response_class=Response,
    responses=route_docs.METRICS,
    dependencies=[Depends(authenticate_metrics)],
)
async def metrics(state: ServiceState = Depends(get_state)) -> Response:  # noqa: B008
    """Prometheus metrics of the queue and the workers (text exposition format)."""
    stats = await state.queue.stats()
    return Response(render_metrics(stats), media_type="text/plain; version=0.0.4")


def _error_response(error: RendererError) -> JSONResponse:
    body = ErrorResponse.build(error.message, error.error_type, param=error.param, code=error.code)
    headers = dict(error.headers)
    if isinstance(error, (QueueFullError, StoreFullError)):
        headers["Retry-After"] = str(error.retry_after_s)
    elif isinstance(error, BackendUnavailableError):
        headers["Retry-After"] = "1"
    return JSONResponse(body.model_dump(), status_code=error.status_code, headers=headers)


def _install_error_handlers(app: FastAPI, settings: Settings) -> None:
    """Map every error to the OpenAI envelope, in this one place."""

    async def on_renderer_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RendererError)
        return _error_response(error)

    async def on_redis_down(request: Request, error: Exception) -> JSONResponse:
        logger.warning("redis unavailable: %s", error)
        return _error_response(BackendUnavailableError("the job store (Redis) is unreachable"))

    async def on_redis_refused(request: Request, error: Exception) -> JSONResponse:
        # Under `noeviction` a full Redis refuses writes with an OOM error: tell the client to
        # come back, like any other overload. Other refusals are bugs: the 500 handler's.
        if not isinstance(error, OutOfMemoryError):
            return await on_unexpected(request, error)
        logger.warning("redis is full (maxmemory): %s", error)
        full = StoreFullError(
            "the job store (Redis) is full; retry later", retry_after_s=settings.retry_after_s
        )
        return _error_response(full)

    async def on_validation(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        first = error.errors()[0] if error.errors() else {}
        location = [str(part) for part in first.get("loc", ()) if part != "body"]
        # A check across fields (the render budget) names the field to change in its context.
        param = ".".join(location) or (first.get("ctx") or {}).get("param")
        message = f"{'.'.join(location) or 'body'}: {first.get('msg', 'invalid request')}"
        return _error_response(InvalidRequestError(message, param=param or None))

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
    app.add_exception_handler(ResponseError, on_redis_refused)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)


class RendererApp(FastAPI):
    """The renderer API: FastAPI with an OpenAPI document true to its error answers."""

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI document, without FastAPI's default 422 answers.

        Invalid requests answer 400 in the OpenAI envelope (documented on each route); FastAPI
        adds a 422 with its own error model to every route with parameters, never sent here.
        """
        if self.openapi_schema is None:
            _drop_default_422(super().openapi())  # builds and keeps `openapi_schema`
        assert self.openapi_schema is not None
        return self.openapi_schema


def _drop_default_422(document: dict[str, Any]) -> None:
    for path in document.get("paths", {}).values():
        for operation in path.values():
            responses = operation.get("responses", {})
            content = responses.get("422", {}).get("content", {}).get("application/json", {})
            if content.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
                del responses["422"]
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)


#: Redis connections of one API process: requests in flight at once, plus the webhook delivery.
REDIS_POOL_SIZE = 256
#: How long a request waits for a free Redis connection before it answers 503.
REDIS_POOL_WAIT_S = 5.0


def create_app(settings: Settings) -> FastAPI:
    """Build the API application; clients are opened by its lifespan, not here."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A blocking pool: past its size a request waits for a free connection (then gets 503)
        # instead of failing at once, as redis-py's default pool of 100 does under a burst.
        pool = BlockingConnectionPool.from_url(
            settings.redis_url,
            decode_responses=True,
            max_connections=REDIS_POOL_SIZE,
            timeout=REDIS_POOL_WAIT_S,
            socket_connect_timeout=2.0,
            socket_timeout=10.0,
            health_check_interval=30,
        )
        redis = Redis(connection_pool=pool)
        try:
            await ensure_group(redis)
            await ensure_webhook_group(redis)
        except (RedisConnectionError, RedisTimeoutError) as error:
            # Start anyway: requests answer 503 until Redis is back, then work again.
            logger.warning("redis unavailable at start-up: %s", error)
        http = httpx.AsyncClient(
            base_url=settings.llm_url, timeout=settings.llm_timeout_s, headers=llm_headers
        )
        # Webhooks are sent by every API process (one consumer each), never by a worker.
        hooks_http = httpx.AsyncClient(timeout=settings.webhook_timeout_s, follow_redirects=False)
        policy = URLPolicy.parse(settings.webhook_allowed_hosts)
        dispatcher = WebhookDispatcher(
            redis, settings, hooks_http, consumer=webhook_consumer_name(), policy=policy
        )
        app.state.service = ServiceState(
            settings=settings,
            redis=redis,
            queue=JobQueue(redis, settings),
            store=build_store(settings),
            http=http,
            webhooks=WebhookAdmission(
                policy=policy,
                keys=dispatcher.keys,
                progress_every=settings.webhook_progress_every,
            ),
            quotas=KeyQuotas(redis, settings),
        )
        delivery = asyncio.create_task(dispatcher.run(), name="webhook-delivery")
        try:
            yield
        finally:
            dispatcher.stop()
            delivery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await delivery
            await hooks_http.aclose()
            await http.aclose()
            await redis.aclose()
            await pool.disconnect()

    keys = service_keys(
        settings.api_keys.get_secret_value(),
        required=settings.require_api_keys,
        setting="OMOST_RENDERER_API_KEYS",
    )
    # The renderer's own key for the LLM service; a caller's key is never passed on.
    llm_key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else ""
    llm_headers = {"authorization": f"Bearer {llm_key}"} if llm_key else {}
    keyed = [Depends(authenticate)]

    app = RendererApp(title="omost-renderer", version="0.1.0", lifespan=lifespan)
    app.state.keys = keys
    _install_error_handlers(app, settings)
    app.include_router(health_router)
    # The served models, like every /v1 route, need a key when keys are configured.
    app.include_router(models_router, dependencies=keyed)
    app.include_router(renders_router, dependencies=keyed)
    app.include_router(images_router, dependencies=keyed)
    include_web(
        app,
        llm_url=settings.llm_url,
        llm_timeout_s=settings.llm_timeout_s,
        llm_headers=llm_headers,
        dependencies=keyed,
    )
    app.add_middleware(RateLimitHeaders)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    return app
