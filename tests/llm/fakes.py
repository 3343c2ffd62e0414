"""A scripted backend for route tests, and canvases to script it with."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from omost_llm.errors import LLMServiceError
from omost_llm.protocol import (
    ChatMessage,
    GenerationEnd,
    GenerationEvent,
    GenerationRequest,
    TextDelta,
)
from omost_schema import Canvas


def make_canvas(color: str = "red", locals_: int = 1) -> Canvas:
    local = {
        "location": "in the center",
        "offset": "no offset",
        "area": "a large square area",
        "distance_to_viewer": 5.0,
        "description": f"A {color} dragon.",
        "detailed_descriptions": ["Scales shine."],
        "tags": "dragon",
        "atmosphere": "Epic.",
        "style": "Fantasy art.",
        "quality_meta": "High quality.",
        "HTML_web_color_name": color,
    }
    return Canvas.model_validate(
        {
            "global_description": {
                "description": "A dragon over a castle.",
                "detailed_descriptions": ["A castle on a hill."],
                "tags": "dragon, castle",
                "HTML_web_color_name": "darkslategray",
            },
            "local_descriptions": [local] * locals_,
        }
    )


def prompt_tokens(messages: list[ChatMessage]) -> int:
    """The fake tokenizer: four characters a token, four more per message, three to answer."""
    return sum(len(m.content) // 4 + 4 for m in messages) + 3


def fenced(canvas: Canvas) -> str:
    """What a constrained backend writes in code mode: a fenced python block of the canvas."""
    return f"```python\n{canvas.to_code()}```"


@dataclass
class FakeBackend:
    """Answers each generation with the next scripted text, in small deltas.

    Attributes:
        outputs: Texts to answer with, one per generation (the last one repeats).
        constrained: What the backend claims about its output.
        finish_reason: Finish reason of every generation.
        delay_s: Pause before each delta (to test disconnects and concurrency).
        error: Raised instead of generating, when set.
        is_ready: What ``ready()`` answers.
        context: The context length it reports (``None``: unknown).
        counts: Whether it counts prompt tokens (``fake_tokens`` of each message).
    """

    outputs: list[str] = field(default_factory=lambda: [fenced(make_canvas())])
    constrained: bool = True
    finish_reason: str = "stop"
    delay_s: float = 0.0
    error: LLMServiceError | None = None
    is_ready: bool = True
    context: int | None = None
    counts: bool = True
    requests: list[GenerationRequest] = field(default_factory=list)
    deltas: int = 0
    cancelled: int = 0
    completed: int = 0
    started: bool = False
    closed: bool = False

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    async def ready(self) -> bool:
        return self.is_ready

    async def context_length(self) -> int | None:
        return self.context

    async def count_prompt_tokens(self, messages: list[ChatMessage]) -> int | None:
        return prompt_tokens(messages) if self.counts else None

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationEvent, None]:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        text = self.outputs[min(len(self.requests), len(self.outputs)) - 1]
        pieces = [text[i : i + 16] for i in range(0, len(text), 16)]
        try:
            for piece in pieces:
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                self.deltas += 1
                yield TextDelta(piece)
        except (GeneratorExit, asyncio.CancelledError):
            self.cancelled += 1
            raise
        self.completed += 1
        yield GenerationEnd(self.finish_reason, prompt_tokens=10, completion_tokens=len(pieces))
