"""Backends that call an OpenAI-compatible server over HTTP.

vLLM (the production path), or any other such server: llama.cpp, Ollama, a hosted API.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import httpx
from omost_schema import CanvasBudget

from omost_llm.canvas_budget import model_budget
from omost_llm.config import OutputMode, Settings
from omost_llm.constraints import cache_safe_json_schema, decoding_grammar, decoding_json_schema
from omost_llm.errors import (
    BackendResponseError,
    BackendTimeoutError,
    BackendUnavailableError,
    BadRequestError,
    LLMServiceError,
    SaturatedError,
)
from omost_llm.protocol import (
    ChatMessage,
    GenerationEnd,
    GenerationEvent,
    GenerationRequest,
    TextDelta,
)

# Distinct canvas budgets whose request fields are kept.
_MAX_CACHED_CONSTRAINTS = 16


class OpenAIBackend:
    """Any OpenAI-compatible server.

    JSON mode uses ``response_format`` json_schema when the server offers it; everything else is
    free text, read leniently by the composer and retried once when invalid. Such servers have no
    common way to count a chat's tokens, so the context is theirs to enforce (a prompt over it is
    their 400, answered as ``upstream_rejected``).
    """

    def __init__(self, settings: Settings) -> None:
        """Configure the HTTP client (connections open lazily)."""
        self.settings = settings
        headers = {}
        if settings.api_key.get_secret_value():
            headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
        self._client = httpx.AsyncClient(
            base_url=settings.base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(settings.request_timeout_s, connect=settings.connect_timeout_s),
        )
        self._warm = False
        self._budget = model_budget(settings)
        # Built once per budget: the schema or grammar is the same for every request with it.
        self._constraints: dict[CanvasBudget, dict[str, Any]] = {}

    @property
    def constrained(self) -> bool:
        """JSON mode with json_schema response_format is constrained; free text is not."""
        return (
            self.settings.constrained
            and self.settings.openai_json_schema
            and self.settings.output is OutputMode.JSON
        )

    def constraint_fields(self, budget: CanvasBudget | None = None) -> dict[str, Any]:
        """Request fields that constrain the answer to a canvas (empty when unconstrained).

        Args:
            budget: The canvas budget (default: the model's).
        """
        budget = budget or self._budget
        fields = self._constraints.get(budget)
        if fields is None:
            # A handful of budgets in practice; the cache is bounded all the same.
            if len(self._constraints) >= _MAX_CACHED_CONSTRAINTS:
                self._constraints.clear()
            fields = self._constraints[budget] = self._constraint_fields(budget)
        return fields

    def _constraint_fields(self, budget: CanvasBudget) -> dict[str, Any]:
        if not self.constrained:
            return {}
        return _json_schema_format(decoding_json_schema(budget))

    async def start(self) -> None:
        """Warm up: one tiny constrained request, so the server compiles the grammar now."""
        if self.settings.warmup:
            await self._warm_up()

    async def _warm_up(self) -> None:
        body = self._body_for("Compose a canvas.", max_tokens=1)
        try:
            response = await self._client.post("/v1/chat/completions", json=body)
            self._warm = response.status_code == 200
        except httpx.HTTPError:
            self._warm = False

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def ready(self) -> bool:
        """The server answers ``/v1/models`` (and warm-up has run when enabled)."""
        try:
            response = await self._client.get("/v1/models", timeout=self.settings.connect_timeout_s)
        except httpx.HTTPError:
            self._warm = False
            return False
        if response.status_code != 200:
            return False
        if self.settings.warmup and not self._warm:
            await self._warm_up()
        return self._warm or not self.settings.warmup

    async def context_length(self) -> int | None:
        """Unknown: the upstream enforces its own context."""
        return None

    async def count_prompt_tokens(self, messages: list[ChatMessage]) -> int | None:
        """Not counted (no common tokenize endpoint)."""
        return None

    def _body_for(self, prompt: str, *, max_tokens: int) -> dict[str, Any]:
        return {
            "model": self.settings.upstream_model_id,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            **self.constraint_fields(),
        }

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationEvent, None]:
        """Stream the upstream answer; leaving early closes the connection, which cancels it."""
        body: dict[str, Any] = {
            "model": self.settings.upstream_model_id,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.sampling.max_tokens,
            "temperature": request.sampling.temperature,
            "top_p": request.sampling.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
            **self.constraint_fields(request.budget),
        }
        if request.sampling.seed is not None:
            body["seed"] = request.sampling.seed
        if request.sampling.stop:
            body["stop"] = request.sampling.stop
        try:
            async with self._client.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise _upstream_error(response, self.settings.retry_after_s)
                async for event in _events(response):
                    yield event
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc

    def _transport_error(self, exc: httpx.TransportError) -> LLMServiceError:
        if isinstance(exc, httpx.TimeoutException):
            return BackendTimeoutError("the upstream server timed out")
        return BackendUnavailableError(
            f"the upstream server cannot be reached: {type(exc).__name__}",
            retry_after=self.settings.retry_after_s,
        )


class VLLMBackend(OpenAIBackend):
    """vLLM's OpenAI server, constrained in both output modes.

    Code mode sends the canvas grammar as ``structured_outputs``; JSON mode the schema as
    ``response_format`` json_schema.
    """

    def __init__(self, settings: Settings) -> None:
        """Configure the HTTP client (connections open lazily)."""
        super().__init__(settings)
        self._context: int | None = None

    @property
    def constrained(self) -> bool:
        """Both modes are constrained (unless switched off to measure)."""
        return self.settings.constrained

    async def context_length(self) -> int | None:
        """The served model's ``max_model_len`` from ``/v1/models`` (asked once, then kept)."""
        if self._context is None:
            try:
                response = await self._client.get(
                    "/v1/models", timeout=self.settings.connect_timeout_s
                )
            except httpx.HTTPError:
                return None  # unreachable: the generation itself reports it
            if response.status_code == 200:
                self._context = _max_model_len(response.json(), self.settings.upstream_model_id)
        return self._context

    async def count_prompt_tokens(self, messages: list[ChatMessage]) -> int | None:
        """Tokens of the templated chat, counted by vLLM's ``/tokenize`` with the model's tokenizer.

        The same chat template and generation prompt as ``/v1/chat/completions`` applies.
        """
        body = {
            "model": self.settings.upstream_model_id,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "add_generation_prompt": True,
        }
        try:
            response = await self._client.post("/tokenize", json=body)
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        if response.status_code != 200:
            raise _upstream_error(response, self.settings.retry_after_s)
        answer = response.json()
        if self._context is None and isinstance(answer.get("max_model_len"), int):
            self._context = answer["max_model_len"]
        return int(answer["count"])

    def _constraint_fields(self, budget: CanvasBudget) -> dict[str, Any]:
        # The grammar as vLLM's ``structured_outputs``, or the schema as ``response_format``,
        # in the form vLLM's xgrammar (grammar cache always on) compiles.
        if not self.constrained:
            return {}
        if self.settings.output is OutputMode.CODE:
            return {"structured_outputs": {"grammar": decoding_grammar(budget)}}
        return _json_schema_format(cache_safe_json_schema(budget))


def _max_model_len(models: dict[str, Any], model: str) -> int | None:
    cards = [card for card in models.get("data") or [] if isinstance(card, dict)]
    named = [card for card in cards if card.get("id") == model] or cards[:1]
    value = named[0].get("max_model_len") if named else None
    return value if isinstance(value, int) and value > 0 else None


def _json_schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "canvas", "schema": schema, "strict": True},
        }
    }


async def _events(response: httpx.Response) -> AsyncGenerator[GenerationEvent, None]:
    finish: str | None = None
    usage: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError as exc:
            raise BackendResponseError("the upstream server sent a malformed event") from exc
        if "error" in chunk:
            raise BackendResponseError(f"the upstream server failed: {chunk['error']}")
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            text = (choice.get("delta") or {}).get("content")
            if text:
                yield TextDelta(text)
            finish = choice.get("finish_reason") or finish
    if finish is None:
        raise BackendResponseError("the upstream stream ended without a finish reason")
    yield GenerationEnd(
        finish,
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
    )


def _upstream_error(response: httpx.Response, retry_after: int) -> LLMServiceError:
    message = f"the upstream server answered {response.status_code}: {response.text[:500]}"
    after = response.headers.get("retry-after")
    seconds = int(after) if after and after.isdigit() else retry_after
    if response.status_code == 429:
        return SaturatedError(message, retry_after=seconds)
    if response.status_code in (502, 503):
        return BackendUnavailableError(message, retry_after=seconds)
    if response.status_code == 504:
        return BackendTimeoutError(message)
    if response.status_code == 400:
        return BadRequestError(message, code="upstream_rejected")
    return BackendResponseError(message)
