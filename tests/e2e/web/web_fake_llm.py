"""A stand-in for the LLM service that streams a known canvas slowly, for deterministic page tests.

It speaks the LLM service's wire format (OpenAI chunks, the ``omost`` field on the last one, an
error event mid-stream) so the page is tested against exactly what it must read, with answers
whose regions and colours are known in advance. "make the dragon red" edits the dragon's colour.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from omost_schema import Canvas, GlobalDescription, LocalDescription, parse_code

DRAGON = LocalDescription(
    location="in the center",
    offset="slightly to the right",
    area="a large square area",
    distance_to_viewer=5.0,
    description="A mighty dragon.",
    detailed_descriptions=["Green scales glisten in the storm light."],
    tags="dragon, scales, wings",
    atmosphere="Menacing.",
    style="Epic fantasy.",
    quality_meta="Highly detailed.",
    HTML_web_color_name="darkgreen",
)
WARRIORS = LocalDescription(
    location="on the left",
    offset="no offset",
    area="a medium-sized vertical area",
    distance_to_viewer=3.0,
    description="A group of fierce warriors.",
    detailed_descriptions=["Warriors in armour raise their swords."],
    tags="warriors, armour, swords",
    atmosphere="Determined.",
    style="Dynamic.",
    quality_meta="Sharp.",
    HTML_web_color_name="darkgoldenrod",
)
BATTLE = Canvas(
    global_description=GlobalDescription(
        description="A fierce battle of warriors and a dragon.",
        detailed_descriptions=["A stormy sky over a rocky field."],
        tags="battle, dragon, warriors, storm",
        HTML_web_color_name="darkslategray",
    ),
    local_descriptions=[DRAGON, WARRIORS],
)


@dataclass
class FakeLLM:
    """What the fake answers and how fast; tests change these between requests.

    Attributes:
        chunk_chars: Characters per streamed piece.
        delay_s: Pause between pieces (long enough for a test to see the sketch grow).
        fail_after: Send an error event after this many pieces (``None``: never).
        left_out: Messages the answer says were left out to fit the context (0: none).
        requests: Bodies of the chat requests received, newest last.
    """

    chunk_chars: int = 40
    delay_s: float = 0.01
    fail_after: int | None = None
    left_out: int = 0
    requests: list[dict[str, object]] = field(default_factory=list)

    def canvas_for(self, messages: list[dict[str, str]]) -> Canvas:
        """The battle canvas; an edit asking for red makes the dragon red."""
        last = messages[-1]["content"].lower()
        if "red" in last:
            red = DRAGON.model_copy(update={"HTML_web_color_name": "red"})
            return BATTLE.model_copy(update={"local_descriptions": [red, WARRIORS]})
        return BATTLE


def _chunk(content: str | None, **extra: object) -> str:
    delta = {} if content is None else {"content": content}
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        **extra,
    }
    return f"data: {json.dumps(body)}\n\n"


def build_fake_llm(fake: FakeLLM) -> FastAPI:
    """Return the fake LLM service's app."""
    app = FastAPI()

    @app.get("/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    @app.get("/v1/models")
    async def models() -> dict[str, object]:
        return {"object": "list", "data": [{"id": "fake", "object": "model", "created": 0}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> StreamingResponse:
        body = await request.json()
        fake.requests.append(body)
        canvas = fake.canvas_for(body["messages"])
        answer = f"Here is the canvas:\n\n```python\n{canvas.to_code()}```"
        parsed = parse_code(answer)

        async def stream() -> AsyncIterator[str]:
            for n, start in enumerate(range(0, len(answer), fake.chunk_chars)):
                if fake.fail_after is not None and n >= fake.fail_after:
                    error = {"message": "the model backend crashed", "type": "server_error"}
                    yield f"data: {json.dumps({'error': {**error, 'code': 'backend_error'}})}\n\n"
                    yield "data: [DONE]\n\n"
                    return
                yield _chunk(answer[start : start + fake.chunk_chars])
                await asyncio.sleep(fake.delay_s)
            omost = {
                "canvas": parsed.canvas.model_dump(),
                "corrections": [],
                "changed_regions": [],
                "retries": 0,
                "output": "code",
                "truncated_history": fake.left_out > 0,
                "messages_left_out": fake.left_out,
            }
            yield _chunk(None, omost=omost)
            yield "data: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    return app
