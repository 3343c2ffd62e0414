"""The seam between the service and whatever produces tokens: one Protocol, plain records."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Literal, Protocol

from omost_schema import FULL_BUDGET, CanvasBudget

from omost_llm.config import OutputMode

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    """One turn of the conversation the backend sees."""

    role: Role
    content: str


@dataclass(frozen=True)
class SamplingParams:
    """Per-request sampling settings.

    Attributes:
        max_tokens: Most new tokens; running out is a failure (a cut canvas is no canvas).
        temperature: Sampling temperature; 0 is greedy.
        top_p: Nucleus sampling mass.
        seed: Sampling seed, for repeatable answers.
        stop: Extra stop strings.
    """

    max_tokens: int
    temperature: float = 0.6
    top_p: float = 0.9
    seed: int | None = None
    stop: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate: the full conversation (system prompt included) and sampling settings.

    Attributes:
        messages: The conversation, system prompt first.
        output: ``code`` (Omost code under the canvas grammar) or ``json`` (canvas JSON).
        sampling: How to sample.
        budget: Most locals, detailed descriptions and characters per string the constraint
            allows.
        edit: The conversation holds an earlier answer (a canvas being edited), so the new
            answer likely repeats much of the prompt (prompt-lookup decoding pays off).
    """

    messages: list[ChatMessage]
    output: OutputMode
    sampling: SamplingParams
    budget: CanvasBudget = FULL_BUDGET
    edit: bool = False


@dataclass(frozen=True)
class TextDelta:
    """A piece of generated text.

    Attributes:
        text: The text.
        tokens: Tokens generated since the previous delta (several when a backend appends
            more than one per step or holds back an incomplete character; 0 when a token was
            re-tokenized into one that also carries new text).
    """

    text: str
    tokens: int = 1


@dataclass(frozen=True)
class GenerationEnd:
    """The last event of a generation.

    Attributes:
        finish_reason: ``stop`` when the model finished, ``length`` when it ran out of tokens.
        prompt_tokens: Tokens of the prompt.
        completion_tokens: Tokens generated.
        draft_tokens: Prompt-lookup draft tokens verified (in-process backend).
        accepted_draft_tokens: Of those, the tokens accepted.
        forced_tokens: Jump-forward draft tokens accepted (in-process backend).
    """

    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    draft_tokens: int = 0
    accepted_draft_tokens: int = 0
    forced_tokens: int = 0


GenerationEvent = TextDelta | GenerationEnd


class Backend(Protocol):
    """A token source: vLLM, any OpenAI-compatible server, or an in-process model.

    ``constrained`` says whether the output is valid by construction (grammar or schema enforced);
    an unconstrained backend's answer is parsed leniently and retried once when invalid.
    """

    @property
    def constrained(self) -> bool:
        """Whether decoding is constrained to valid canvases in ``output`` mode."""
        ...

    async def start(self) -> None:
        """Connect, load and warm up (compile the grammar); called once at start-up."""
        ...

    async def close(self) -> None:
        """Release connections, threads and models."""
        ...

    async def ready(self) -> bool:
        """Whether the backend is reachable and warmed up now."""
        ...

    async def context_length(self) -> int | None:
        """The model's context length in tokens (prompt and answer), or ``None`` if unknown."""
        ...

    async def count_prompt_tokens(self, messages: list[ChatMessage]) -> int | None:
        """Tokens of ``messages`` as the model sees them (chat template and generation prompt).

        Counted with the model's own tokenizer; ``None`` when this backend cannot count.

        Raises:
            LLMServiceError: The backend cannot be reached.
        """
        ...

    def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationEvent, None]:
        """Stream the answer: text deltas, then exactly one ``GenerationEnd``.

        Closing the iterator early (a client went away) must cancel the generation upstream.

        Raises:
            LLMServiceError: One of the service's errors (unavailable, saturated, timeout...).
        """
        ...
