"""The composer: conversation in, validated canvas out, over any backend.

Constrained backends stream live (valid by construction, checked by the strict parser at the
end): ``code`` mode token by token, ``json`` mode as the Omost code of each finished region.
Unconstrained backends' answers are generated in full, read leniently, retried once with the
parse error fed back, and then sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace

from omost_schema import Canvas, CanvasBudget, Correction

from omost_llm.answer import (
    ANSWER_PREFIX,
    ANSWER_SENTENCE,
    RegionChange,
    canvas_from_answer,
    changed_regions,
    fenced_block,
    fenced_tail,
    wrap_code,
)
from omost_llm.canvas_budget import model_budget
from omost_llm.canvas_output import InvalidCanvasError, ParsedOutput, read_output, retry_feedback
from omost_llm.config import OutputMode, Settings
from omost_llm.context_budget import Budget, fit
from omost_llm.errors import (
    AnswerTooLongError,
    BackendResponseError,
    BackendTimeoutError,
    ContextLengthExceededError,
    SaturatedError,
)
from omost_llm.json_progress import JsonCodeStream
from omost_llm.metrics import Metrics
from omost_llm.prompt import system_prompt
from omost_llm.protocol import (
    Backend,
    ChatMessage,
    GenerationEnd,
    GenerationEvent,
    GenerationRequest,
    SamplingParams,
    TextDelta,
)


@dataclass(frozen=True)
class Conversation:
    """What the backend sees, and the canvas being edited (the last one in the history).

    Attributes:
        messages: The conversation, system prompt first.
        previous: The canvas being edited, if any.
        canvas_index: Position in ``messages`` of the assistant answer holding ``previous``: it
            and what follows stay when older turns must be left out to fit the context.
        budget: The canvas budget the answer is decoded under (``None``: the model's).
    """

    messages: list[ChatMessage]
    previous: Canvas | None
    canvas_index: int | None = None
    budget: CanvasBudget | None = None


@dataclass(frozen=True)
class Progress:
    """Tokens generated so far, yielded by ``Composer.stream(..., progress=True)``."""

    completion_tokens: int
    prompt_tokens: int = 0


@dataclass(frozen=True)
class Composition:
    """A finished answer: the canvas, its code, the chat content and the accounting."""

    canvas: Canvas
    code: str
    content: str
    corrections: list[Correction]
    changes: list[RegionChange]
    retries: int
    prompt_tokens: int
    completion_tokens: int
    first_token_s: float | None
    total_s: float
    left_out: int = 0


@dataclass
class _Attempt:
    budget: CanvasBudget | None = None
    text: str = ""
    tokens: int = 0
    end: GenerationEnd | None = None
    first_token_s: float | None = None


class Composer:
    """Builds prompts, runs the backend under limits, and validates every answer.

    Args:
        backend: The token source.
        settings: Service settings (output mode, limits, timeouts).
        metrics: Where to count tokens, invalid outputs and retries.
    """

    def __init__(self, backend: Backend, settings: Settings, metrics: Metrics) -> None:
        self.backend = backend
        self.settings = settings
        self.metrics = metrics
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        self._waiting = 0
        self.budget = model_budget(settings)

    @property
    def output(self) -> OutputMode:
        """The output mode of every generation."""
        return self.settings.output

    @property
    def streams_live(self) -> bool:
        """Whether the answer goes to the client as it comes (constrained decoding).

        Omost code token by token; canvas JSON as the Omost code of each finished region.
        """
        return self.backend.constrained

    def system_prompt(
        self, client_prompt: str | None = None, budget: CanvasBudget | None = None
    ) -> str:
        """The system prompt: the client's if it sent one, else Omost's; plus the JSON rules."""
        return system_prompt(self.output, budget or self.budget, client_prompt)

    def conversation(
        self, turns: Sequence[tuple[str, str]], budget: CanvasBudget | None = None
    ) -> Conversation:
        """Build the backend's conversation from a chat history of ``(role, text)`` turns.

        Earlier assistant answers are the canvases being edited, sent back as the model wrote
        them: in ``code`` mode without the sentence this service puts before the fenced block,
        in ``json`` mode as canvas JSON. ``budget`` bounds the answer (default: the model's).
        """
        budget = budget or self.budget
        system = [text for role, text in turns if role in ("system", "developer")]
        client_prompt = "\n\n".join(system) or None
        messages = [ChatMessage("system", self.system_prompt(client_prompt, budget))]
        previous: Canvas | None = None
        canvas_index: int | None = None
        for role, text in turns:
            if role == "assistant":
                canvas = canvas_from_answer(text)
                if canvas is not None:
                    previous, canvas_index = canvas, len(messages)
                    text = self._as_written(text, canvas)
                messages.append(ChatMessage("assistant", text))
            elif role == "user":
                messages.append(ChatMessage("user", text))
        return Conversation(
            messages=messages, previous=previous, canvas_index=canvas_index, budget=budget
        )

    def _as_written(self, answer: str, canvas: Canvas) -> str:
        if self.output is OutputMode.JSON:
            return canvas.model_dump_json()
        return answer.removeprefix(ANSWER_SENTENCE)

    def canvas_conversation(
        self, prompt: str, previous: Canvas | None, budget: CanvasBudget | None = None
    ) -> Conversation:
        """The conversation of ``POST /v1/canvases``: a canvas to edit (if any), then the prompt.

        The canvas goes back the way Omost's models saw their own answers in training: as the
        assistant turn of a chat, its fenced python block (canvas JSON in ``json`` mode), after
        a user turn; the canvas's global description stands in for the request that made it.
        """
        turns: list[tuple[str, str]] = []
        if previous is not None:
            turns += [
                ("user", previous.global_description.description),
                ("assistant", fenced_block(previous.to_code())),
            ]
        turns.append(("user", prompt))
        return self.conversation(turns, budget)

    async def compose(self, conversation: Conversation, params: SamplingParams) -> Composition:
        """Generate and validate one canvas (no streaming)."""
        result: Composition | None = None
        async with aclosing(self.stream(conversation, params)) as items:
            async for item in items:
                if isinstance(item, Composition):
                    result = item
        assert result is not None  # stream() always ends with a Composition or raises
        return result

    async def stream(
        self, conversation: Conversation, params: SamplingParams, *, progress: bool = False
    ) -> AsyncGenerator[str | Progress | Composition, None]:
        """Yield the answer's content pieces, then the finished ``Composition``.

        With ``progress``, a ``Progress`` follows each piece the backend sends (constrained
        backends stream live; others only at the end).

        Raises:
            LLMServiceError: Saturated, timed out, too long, or invalid after the retry.
        """
        start = time.perf_counter()
        async with self._slot():
            budget = await self._fit(
                conversation.messages, conversation.canvas_index, params, start
            )
            if budget.left_out:
                self.metrics.truncated_histories.inc()
            if self.streams_live:
                items = self._stream_live(conversation, budget, params, start, progress)
                async with aclosing(items):
                    async for item in items:
                        yield item
            else:
                composition = await self._generate_checked(conversation, budget, params, start)
                yield composition.content
                yield composition

    async def _fit(
        self,
        messages: list[ChatMessage],
        canvas_index: int | None,
        params: SamplingParams,
        start: float,
    ) -> Budget:
        remaining = start + self.settings.request_timeout_s - time.perf_counter()
        try:
            async with asyncio.timeout(max(remaining, 0.0)):
                return await fit(
                    self.backend,
                    messages,
                    canvas_index,
                    max_tokens=params.max_tokens,
                    min_answer_tokens=self.settings.min_answer_tokens,
                    configured_context=self.settings.max_model_len,
                )
        except TimeoutError as exc:
            raise BackendTimeoutError(
                f"the backend took longer than {self.settings.request_timeout_s:g} s"
            ) from exc

    async def _stream_live(
        self,
        conversation: Conversation,
        budget: Budget,
        params: SamplingParams,
        start: float,
        progress: bool,
    ) -> AsyncGenerator[str | Progress | Composition, None]:
        attempt = _Attempt(budget=conversation.budget)
        # The sentence first; then the fenced block as the model writes it (the grammar holds
        # the fences, as in Omost's own answers). JSON goes out as the Omost code of each
        # finished region, the block that the whole canvas's code completes at the end.
        code_mode = self.output is OutputMode.CODE
        json_code = JsonCodeStream()
        yield ANSWER_SENTENCE if code_mode else ANSWER_PREFIX
        sampling = replace(params, max_tokens=budget.max_tokens)
        async with aclosing(self._run(budget.messages, sampling, start, attempt)) as pieces:
            async for piece in pieces:
                yield piece if code_mode else json_code.add(piece)
                if progress:
                    yield Progress(attempt.tokens, budget.prompt_tokens or 0)
        parsed = self._check(attempt, budget, strict=True)
        if code_mode:
            tail = fenced_tail(attempt.text)
            content = ANSWER_SENTENCE + attempt.text + tail
        else:
            content = wrap_code(parsed.code)
            sent = ANSWER_PREFIX + json_code.sent
            if not content.startswith(sent):
                self.metrics.invalid_outputs.inc()
                raise BackendResponseError("the streamed code does not match the canvas")
            tail = content[len(sent) :]
        if tail:
            yield tail
        yield self._finish(conversation, budget, parsed, content, [attempt], start)

    async def _generate_checked(
        self, conversation: Conversation, budget: Budget, params: SamplingParams, start: float
    ) -> Composition:
        messages = list(budget.messages)
        attempts: list[_Attempt] = []
        strict = self.backend.constrained
        step = budget
        while True:
            attempt = _Attempt(budget=conversation.budget)
            attempts.append(attempt)
            sampling = replace(params, max_tokens=step.max_tokens)
            async with aclosing(self._run(messages, sampling, start, attempt)) as pieces:
                async for _ in pieces:
                    pass
            try:
                parsed = self._check(attempt, step, strict=strict)
            except BackendResponseError as exc:
                if strict or len(attempts) > 1:
                    raise
                self.metrics.retries.inc()
                error = InvalidCanvasError(exc.message)
                messages += [
                    ChatMessage("assistant", attempt.text),
                    ChatMessage("user", retry_feedback(error, self.output)),
                ]
                try:
                    # The retry's longer conversation must fit too; nothing more is left out.
                    step = await self._fit(messages, None, params, start)
                except ContextLengthExceededError:
                    raise exc from None
                continue
            content = wrap_code(parsed.code)
            return self._finish(conversation, budget, parsed, content, attempts, start)

    async def _run(
        self, messages: list[ChatMessage], params: SamplingParams, start: float, attempt: _Attempt
    ) -> AsyncGenerator[str, None]:
        request = GenerationRequest(
            messages=messages,
            output=self.output,
            sampling=params,
            budget=attempt.budget or self.budget,
            edit=any(m.role == "assistant" for m in messages),
        )
        deadline = start + self.settings.request_timeout_s
        events = self.backend.generate(request)
        try:
            while True:
                event = await self._next_event(events, deadline)
                if event is None:
                    break
                if isinstance(event, TextDelta):
                    if attempt.first_token_s is None and event.text:
                        attempt.first_token_s = time.perf_counter() - start
                        self.metrics.first_token.observe(attempt.first_token_s)
                    attempt.text += event.text
                    attempt.tokens += event.tokens
                    yield event.text
                else:
                    attempt.end = event
        finally:
            # Closing the backend's iterator is what cancels the generation upstream.
            await events.aclose()
        self._count_tokens(attempt)

    async def _next_event(
        self, events: AsyncIterator[GenerationEvent], deadline: float
    ) -> GenerationEvent | None:
        remaining = deadline - time.perf_counter()
        try:
            # A timeout scope around the pull alone (never around a yield to the consumer): unlike
            # ``wait_for``, it starts no task per token, which cost more than the rest of the loop.
            async with asyncio.timeout(max(remaining, 0.0)):
                return await anext(events)
        except StopAsyncIteration:
            return None
        except TimeoutError as exc:
            raise BackendTimeoutError(
                f"the backend took longer than {self.settings.request_timeout_s:g} s"
            ) from exc

    def _count_tokens(self, attempt: _Attempt) -> None:
        if attempt.end is not None:
            self.metrics.tokens.labels("prompt").inc(attempt.end.prompt_tokens)
            self.metrics.tokens.labels("completion").inc(attempt.end.completion_tokens)
            end = attempt.end
            self.metrics.draft_tokens.labels("accepted").inc(end.accepted_draft_tokens)
            self.metrics.draft_tokens.labels("rejected").inc(
                end.draft_tokens - end.accepted_draft_tokens
            )
            self.metrics.forced_tokens.inc(end.forced_tokens)

    def _check(self, attempt: _Attempt, budget: Budget, *, strict: bool) -> ParsedOutput:
        if attempt.end is None:
            self.metrics.invalid_outputs.inc()
            raise BackendResponseError("the backend stream ended without a finish reason")
        if attempt.end.finish_reason == "length":
            self.metrics.invalid_outputs.inc()
            if budget.context is not None and budget.prompt_tokens is not None:
                advice = (
                    f"the model's context of {budget.context} tokens left "
                    f"{budget.context - budget.prompt_tokens} after the prompt; raise max_tokens "
                    "or shorten the messages"
                )
            else:
                advice = "raise max_tokens"
            raise AnswerTooLongError(
                f"the canvas did not fit in max_tokens={attempt.end.completion_tokens} ({advice})",
                param="max_tokens",
            )
        try:
            return read_output(attempt.text, self.output, strict=strict)
        except InvalidCanvasError as exc:
            self.metrics.invalid_outputs.inc()
            raise BackendResponseError(
                f"the backend's answer is not a valid canvas: {exc}"
            ) from exc

    def _finish(
        self,
        conversation: Conversation,
        budget: Budget,
        parsed: ParsedOutput,
        content: str,
        attempts: list[_Attempt],
        start: float,
    ) -> Composition:
        ends = [a.end for a in attempts if a.end is not None]
        return Composition(
            canvas=parsed.canvas,
            code=parsed.code,
            content=content,
            corrections=parsed.corrections,
            changes=changed_regions(conversation.previous, parsed.canvas),
            retries=len(attempts) - 1,
            prompt_tokens=sum(e.prompt_tokens for e in ends),
            completion_tokens=sum(e.completion_tokens for e in ends),
            first_token_s=attempts[0].first_token_s,
            total_s=time.perf_counter() - start,
            left_out=budget.left_out,
        )

    def _slot(self) -> _Slot:
        if self._slots.locked() and self._waiting >= self.settings.max_queue:
            raise SaturatedError(
                "too many requests are running; retry shortly",
                retry_after=self.settings.retry_after_s,
            )
        return _Slot(self)


class _Slot:
    """One generation slot, counting waiters so the queue stays bounded."""

    def __init__(self, composer: Composer) -> None:
        self._composer = composer

    async def __aenter__(self) -> None:
        self._composer._waiting += 1
        try:
            await self._composer._slots.acquire()
        finally:
            self._composer._waiting -= 1
        self._composer.metrics.running.inc()

    async def __aexit__(self, *exc: object) -> None:
        self._composer.metrics.running.dec()
        self._composer._slots.release()
