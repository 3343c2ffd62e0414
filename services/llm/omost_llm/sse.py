"""Server-sent events for chat streams: OpenAI's chunk layout, one error event, then ``[DONE]``."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Send

from omost_llm.api_models import ChatCompletionChunk, ChunkChoice, Delta, OmostExtra, Usage, dump
from omost_llm.errors import LLMServiceError
from omost_llm.serving import Composition, Progress


def sse_event(payload: dict[str, Any] | str) -> bytes:
    """One ``data:`` event."""
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


class ChunkWriter:
    """Builds the chunks of one streamed answer (shared id, model and creation time)."""

    def __init__(self, model: str) -> None:
        """Start a stream for ``model``."""
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.model = model
        self.created = int(time.time())

    def chunk(
        self,
        delta: Delta,
        *,
        finish: bool = False,
        usage: Usage | None = None,
        omost: OmostExtra | None = None,
        no_choices: bool = False,
    ) -> bytes:
        """Encode one chunk as an SSE event."""
        choices = (
            []
            if no_choices
            else [ChunkChoice(delta=delta, finish_reason="stop" if finish else None)]
        )
        body = ChatCompletionChunk(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=choices,
            usage=usage,
            omost=omost,
        )
        return sse_event(dump(body))


async def chat_events(
    writer: ChunkWriter,
    head: list[str | Progress | Composition],
    rest: AsyncGenerator[str | Progress | Composition, None],
    extra: Any,
    include_usage: bool,
    continuous_usage: bool = False,
) -> AsyncGenerator[bytes, None]:
    """The SSE body of a chat stream.

    Args:
        writer: Chunk builder of this stream.
        head: Items already taken from the composer (so errors before the first token still got
            a proper HTTP status).
        rest: The rest of the composer's stream.
        extra: Callable turning the final ``Composition`` into the ``omost`` field.
        include_usage: Send the usage chunk (``stream_options.include_usage``).
        continuous_usage: Send one chunk per ``Progress`` with the usage so far, carrying the
            text since the previous one (``stream_options.continuous_usage_stats``).
    """
    yield writer.chunk(Delta(role="assistant", content=""))
    held = ""
    try:
        async for item in _chain(head, rest):
            if isinstance(item, Progress):
                usage = Usage(
                    prompt_tokens=item.prompt_tokens,
                    completion_tokens=item.completion_tokens,
                    total_tokens=item.prompt_tokens + item.completion_tokens,
                )
                yield writer.chunk(Delta(content=held), usage=usage)
                held = ""
            elif isinstance(item, Composition):
                if held:
                    yield writer.chunk(Delta(content=held))
                    held = ""
                yield writer.chunk(Delta(), finish=True, omost=extra(item))
                if include_usage:
                    usage = Usage(
                        prompt_tokens=item.prompt_tokens,
                        completion_tokens=item.completion_tokens,
                        total_tokens=item.prompt_tokens + item.completion_tokens,
                    )
                    yield writer.chunk(Delta(), usage=usage, no_choices=True)
            elif continuous_usage:
                held += item
            elif item:
                yield writer.chunk(Delta(content=item))
    except LLMServiceError as exc:
        yield sse_event(dump(exc.to_response()))
    finally:
        # Deterministically stop the generation when the client went away.
        await rest.aclose()
    yield sse_event("[DONE]")


async def _chain(
    head: list[str | Progress | Composition], rest: AsyncIterator[str | Progress | Composition]
) -> AsyncIterator[str | Progress | Composition]:
    for item in head:
        yield item
    async for item in rest:
        yield item


class ClosingStreamingResponse(StreamingResponse):
    """A streaming response that always closes its body iterator, even when the client left.

    Closing it closes the composer's stream and with it the backend's generation.
    """

    async def stream_response(self, send: Send) -> None:
        """Stream the body, then close the iterator whatever happened."""
        try:
            await super().stream_response(send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()
