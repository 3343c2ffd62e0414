"""HTTP routes: thin handlers that check limits and hand over to the composer on ``app.state``."""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from omost_llm import route_docs
from omost_llm.api_models import (
    AssistantMessage,
    CanvasRequest,
    CanvasResponse,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    CorrectionOut,
    ModelCard,
    ModelList,
    OmostExtra,
    RegionChangeOut,
    StreamOptions,
    Timings,
    Usage,
    dump,
)
from omost_llm.auth import authenticate, authenticate_metrics, charge_tokens, estimate_tokens
from omost_llm.canvas_budget import request_budget
from omost_llm.config import Settings
from omost_llm.disconnect import cancel_on_disconnect
from omost_llm.errors import BackendUnavailableError, BadRequestError, ModelNotFoundError
from omost_llm.protocol import SamplingParams
from omost_llm.serving import Composer, Composition, Conversation, Progress
from omost_llm.sse import ChunkWriter, ClosingStreamingResponse, chat_events

router = APIRouter()
#: Every `/v1/*` route needs the API key when keys are configured (`omost_llm.auth`).
_KEYED = [Depends(authenticate)]


def _composer(request: Request) -> Composer:
    composer: Composer = request.app.state.composer
    return composer


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _usage(composition: Composition) -> Usage:
    total = composition.prompt_tokens + composition.completion_tokens
    return Usage(
        prompt_tokens=composition.prompt_tokens,
        completion_tokens=composition.completion_tokens,
        total_tokens=total,
    )


def _corrections(composition: Composition) -> list[CorrectionOut]:
    return [
        CorrectionOut(kind=c.kind, original=c.original, corrected=c.corrected, line=c.line)
        for c in composition.corrections
    ]


def _changes(composition: Composition) -> list[RegionChangeOut]:
    return [
        RegionChangeOut(region=c.region, index=c.index, change=c.change)
        for c in composition.changes
    ]


def _extra(composer: Composer, composition: Composition) -> OmostExtra:
    return OmostExtra(
        canvas=composition.canvas,
        corrections=_corrections(composition),
        changed_regions=_changes(composition),
        retries=composition.retries,
        output=composer.output.value,
        truncated_history=composition.left_out > 0,
        messages_left_out=composition.left_out,
    )


def _max_tokens(requested: int | None, settings: Settings) -> int:
    max_tokens = requested or settings.default_max_tokens
    if max_tokens > settings.max_tokens_limit:
        raise BadRequestError(
            f"max_tokens is {max_tokens}; the limit is {settings.max_tokens_limit}",
            param="max_tokens",
            code="max_tokens_too_large",
        )
    return max_tokens


def _check_chat(body: ChatCompletionRequest, settings: Settings) -> None:
    if body.model != settings.model_id:
        raise ModelNotFoundError(
            f"the model `{body.model}` does not exist; this service serves `{settings.model_id}`",
            param="model",
            code="model_not_found",
        )
    if body.n != 1:
        raise BadRequestError("only n=1 is supported", param="n", code="unsupported_value")
    if len(body.messages) > settings.max_messages:
        raise BadRequestError(
            f"{len(body.messages)} messages; the limit is {settings.max_messages}",
            param="messages",
            code="too_many_messages",
        )
    for i, message in enumerate(body.messages):
        if len(message.text()) > settings.max_message_chars:
            raise BadRequestError(
                f"message {i} is longer than {settings.max_message_chars} characters",
                param=f"messages[{i}].content",
                code="message_too_long",
            )
    if body.messages[-1].role != "user":
        raise BadRequestError(
            "the last message must be the user's request", param="messages", code="no_user_turn"
        )


@router.post(
    "/v1/chat/completions", response_model=None, responses=route_docs.CHAT, dependencies=_KEYED
)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    """OpenAI-compatible chat: the answer is an Omost canvas, its JSON in the ``omost`` field."""
    settings, composer = _settings(request), _composer(request)
    _check_chat(body, settings)
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    params = SamplingParams(
        max_tokens=_max_tokens(body.max_completion_tokens or body.max_tokens, settings),
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=stop,
    )
    charge_tokens(request, estimate_tokens([m.text() for m in body.messages], params.max_tokens))
    budget = request_budget(
        composer.budget, body.omost.budget if body.omost else None, "omost.budget"
    )
    conversation = composer.conversation([(m.role, m.text()) for m in body.messages], budget)
    if body.stream:
        options = body.stream_options or StreamOptions()
        # Until the first text the client is watched here; then by the streaming response.
        stream = _stream_chat(composer, conversation, params, settings, options)
        return await cancel_on_disconnect(request, stream)
    composition = await cancel_on_disconnect(request, composer.compose(conversation, params))
    answer = ChatCompletion(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=settings.model_id,
        choices=[Choice(message=AssistantMessage(content=composition.content))],
        usage=_usage(composition),
        omost=_extra(composer, composition),
    )
    return JSONResponse(dump(answer))


async def _stream_chat(
    composer: Composer,
    conversation: Conversation,
    params: SamplingParams,
    settings: Settings,
    options: StreamOptions,
) -> Response:
    continuous = options.continuous_usage_stats
    items = composer.stream(conversation, params, progress=continuous)
    head: list[str | Progress | Composition] = []
    try:
        # Take the first generated text before answering, so that a saturated, unreachable or
        # failing backend still gets its proper HTTP status instead of an error event.
        async for item in items:
            head.append(item)
            if len(head) >= 2 or isinstance(item, Composition):
                break
    except BaseException:
        await items.aclose()
        raise
    events = chat_events(
        ChunkWriter(settings.model_id),
        head,
        items,
        lambda composition: _extra(composer, composition),
        options.include_usage,
        continuous,
    )
    return ClosingStreamingResponse(events, media_type="text/event-stream")


@router.post(
    "/v1/canvases", response_model=None, responses=route_docs.CANVASES, dependencies=_KEYED
)
async def create_canvas(body: CanvasRequest, request: Request) -> Response:
    """Compose (or edit) one canvas and answer with JSON, no chat."""
    settings, composer = _settings(request), _composer(request)
    if len(body.prompt) > settings.max_message_chars:
        raise BadRequestError(
            f"the prompt is longer than {settings.max_message_chars} characters",
            param="prompt",
            code="message_too_long",
        )
    params = SamplingParams(
        max_tokens=_max_tokens(body.max_tokens, settings),
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
    )
    charge_tokens(request, estimate_tokens([body.prompt], params.max_tokens))
    budget = request_budget(composer.budget, body.budget, "budget")
    conversation = composer.canvas_conversation(body.prompt, body.previous_canvas, budget)
    composition = await cancel_on_disconnect(request, composer.compose(conversation, params))
    answer = CanvasResponse(
        canvas=composition.canvas,
        code=composition.code,
        corrections=_corrections(composition),
        changed_regions=_changes(composition),
        usage=_usage(composition),
        timings=Timings(first_token_s=composition.first_token_s, total_s=composition.total_s),
    )
    return JSONResponse(dump(answer))


@router.get("/v1/models", responses=route_docs.MODELS, dependencies=_KEYED)
async def list_models(request: Request) -> JSONResponse:
    """The one model this service serves."""
    settings = _settings(request)
    cards = ModelList(data=[ModelCard(id=settings.model_id, created=request.app.state.started)])
    return JSONResponse(dump(cards))


@router.get("/health", responses=route_docs.HEALTH)
async def health() -> JSONResponse:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})


@router.get("/ready", responses=route_docs.READY)
async def ready(request: Request) -> JSONResponse:
    """Readiness: the backend is reachable and warmed up."""
    if not await _composer(request).backend.ready():
        raise BackendUnavailableError(
            "the backend is not ready", retry_after=_settings(request).retry_after_s
        )
    return JSONResponse({"status": "ready"})


@router.get(
    "/metrics",
    response_class=Response,
    responses=route_docs.METRICS,
    dependencies=[Depends(authenticate_metrics)],
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics."""
    body = request.app.state.metrics.render()
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
