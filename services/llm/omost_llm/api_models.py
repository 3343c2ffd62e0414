"""Request and response bodies of the HTTP API: OpenAI's names for its shapes, ours otherwise."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from omost_schema import Canvas
from omost_schema.json_numbers import NUMBER_ONLY, JsonFloat, JsonInt
from omost_schema.limits import (
    MAX_DETAILED_DESCRIPTIONS,
    MAX_LOCAL_DESCRIPTIONS,
    MAX_TAGS_CHARS,
    MAX_TEXT_CHARS,
)
from pydantic import BaseModel, ConfigDict, Field

# A signed 64-bit integer, as OpenAI documents ``seed`` and as vLLM and torch's generators take it.
SEED_MIN = -(2**63)
SEED_MAX = 2**63 - 1
_SEED_DESCRIPTION = f"Sampling seed, an integer from {SEED_MIN} to {SEED_MAX}."
# Numbers only (no `true` or `"7"`); the constraints stay in the JSON schema.
_Seed = Annotated[int, Field(ge=SEED_MIN, le=SEED_MAX), NUMBER_ONLY]
_Count = Annotated[int, Field(ge=1), NUMBER_ONLY]


class TextPart(BaseModel):
    """A text part of a message's content list."""

    type: Literal["text"]
    text: str


class ChatMessageIn(BaseModel):
    """A message of a chat request (unknown fields such as ``name`` are ignored)."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        """The content as one string."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    """OpenAI's ``stream_options``.

    ``continuous_usage_stats`` (vLLM's name) puts the usage so far into every chunk, and sends
    a chunk for every generated token, so a client can show progress while a canvas is written.
    """

    include_usage: bool = False
    continuous_usage_stats: bool = False


class BudgetIn(BaseModel):
    """A smaller canvas budget for one request; each field at most the model's own."""

    model_config = ConfigDict(extra="forbid")

    max_locals: Annotated[int, Field(ge=0, le=MAX_LOCAL_DESCRIPTIONS), NUMBER_ONLY] | None = None
    max_detailed_descriptions: (
        Annotated[int, Field(ge=1, le=MAX_DETAILED_DESCRIPTIONS), NUMBER_ONLY] | None
    ) = None
    max_chars: Annotated[int, Field(ge=1, le=MAX_TEXT_CHARS), NUMBER_ONLY] | None = None
    max_tags_chars: Annotated[int, Field(ge=1, le=MAX_TAGS_CHARS), NUMBER_ONLY] | None = None


class OmostOptions(BaseModel):
    """The extra ``omost`` field of a chat request."""

    model_config = ConfigDict(extra="forbid")

    budget: BudgetIn | None = None


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``.

    Fields OpenAI's clients send that a canvas does not use are ignored; ``n`` must be 1.
    """

    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[ChatMessageIn] = Field(min_length=1)
    temperature: JsonFloat = Field(0.6, ge=0.0, le=2.0)
    top_p: JsonFloat = Field(0.9, gt=0.0, le=1.0)
    max_tokens: _Count | None = None
    max_completion_tokens: _Count | None = None
    seed: _Seed | None = Field(None, description=_SEED_DESCRIPTION)
    stop: str | list[str] | None = None
    n: JsonInt = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    omost: OmostOptions | None = None


class CorrectionOut(BaseModel):
    """One repair lenient parsing made to what the model wrote."""

    kind: str
    original: str
    corrected: str
    line: int | None = None


class RegionChangeOut(BaseModel):
    """One region that differs from the canvas being edited."""

    region: Literal["global", "local"]
    index: int | None
    change: Literal["added", "modified", "removed"]


class Usage(BaseModel):
    """Token counts, OpenAI's shape."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Timings(BaseModel):
    """Seconds spent: until the first token, and in all."""

    first_token_s: float | None
    total_s: float


class OmostExtra(BaseModel):
    """The extra field of chat answers: the validated canvas and how it came to be.

    ``truncated_history`` is true when older turns were left out to fit the model's context
    (``messages_left_out`` says how many messages); the latest canvas and what follows stay.
    """

    canvas: Canvas
    corrections: list[CorrectionOut]
    changed_regions: list[RegionChangeOut]
    retries: int
    output: Literal["code", "json"]
    truncated_history: bool = False
    messages_left_out: int = 0


class AssistantMessage(BaseModel):
    """The answer's message."""

    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    """The one choice of an answer."""

    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop"] = "stop"
    logprobs: None = None


class ChatCompletion(BaseModel):
    """``chat.completion`` with the ``omost`` extra field."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    omost: OmostExtra


class Delta(BaseModel):
    """A streamed piece of the assistant message."""

    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    """The one choice of a chunk."""

    index: int = 0
    delta: Delta
    finish_reason: Literal["stop"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """``chat.completion.chunk``.

    The chunk with ``finish_reason`` carries ``omost``; the usage chunk has no choices.
    """

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    omost: OmostExtra | None = None


class CanvasRequest(BaseModel):
    """``POST /v1/canvases``: compose (or edit) one canvas, no chat."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1)
    previous_canvas: Canvas | None = None
    seed: _Seed | None = Field(None, description=_SEED_DESCRIPTION)
    temperature: JsonFloat = Field(0.6, ge=0.0, le=2.0)
    top_p: JsonFloat = Field(0.9, gt=0.0, le=1.0)
    max_tokens: _Count | None = None
    budget: BudgetIn | None = None


class CanvasResponse(BaseModel):
    """The canvas as JSON and as Omost code, with corrections, changes, usage and timings."""

    canvas: Canvas
    code: str
    corrections: list[CorrectionOut]
    changed_regions: list[RegionChangeOut]
    usage: Usage
    timings: Timings


class ModelCard(BaseModel):
    """One entry of ``GET /v1/models``."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "omost-serve"


class ModelList(BaseModel):
    """``GET /v1/models``."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


def dump(model: BaseModel) -> dict[str, Any]:
    """JSON-ready dict of a response model."""
    return model.model_dump(mode="json")
