"""Fit a conversation into the model's context: clamp ``max_tokens``, leave out older turns.

Omost's edits only need the latest canvas: the model answers with a complete new program. So when
the whole history leaves too little room for an answer, older turns go first; the system prompt,
the latest canvas and every message after it always stay.
"""

from __future__ import annotations

from dataclasses import dataclass

from omost_llm.errors import ContextLengthExceededError
from omost_llm.protocol import Backend, ChatMessage


@dataclass(frozen=True)
class Budget:
    """What one generation may use.

    Attributes:
        messages: The conversation to send, possibly without older turns.
        max_tokens: The answer's token limit: the request's, lowered to what the context leaves.
        prompt_tokens: Tokens of ``messages`` as the model sees them, when the backend counts.
        context: The model's context length, when known.
        left_out: How many messages of the history were left out.
    """

    messages: list[ChatMessage]
    max_tokens: int
    prompt_tokens: int | None = None
    context: int | None = None
    left_out: int = 0


def shortened(messages: list[ChatMessage], canvas_index: int | None) -> list[list[ChatMessage]]:
    """The shorter conversations to try, longest first, when the whole one does not fit.

    Args:
        messages: The conversation, system prompt first.
        canvas_index: Position of the latest assistant message holding a canvas, if any.

    Returns:
        First the system prompt, the user turn that asked for the latest canvas, that canvas and
        what follows (the shape the model was trained on: a conversation opens with a user turn);
        then the same without that user turn. Empty when there is no earlier canvas.
    """
    if canvas_index is None or canvas_index < 1:
        return []
    system, tail = messages[:1], messages[canvas_index:]
    options: list[list[ChatMessage]] = []
    asked = messages[canvas_index - 1]
    if canvas_index >= 2 and asked.role == "user":
        options.append([*system, asked, *tail])
    options.append([*system, *tail])
    return [option for option in options if len(option) < len(messages)]


def context_of(configured: int | None, reported: int | None) -> int | None:
    """The context to plan with: the smaller of the configured and the backend's, when known."""
    known = [value for value in (configured, reported) if value is not None]
    return min(known) if known else None


async def fit(
    backend: Backend,
    messages: list[ChatMessage],
    canvas_index: int | None,
    *,
    max_tokens: int,
    min_answer_tokens: int,
    configured_context: int | None,
) -> Budget:
    """Fit ``messages`` and an answer into the model's context.

    Args:
        backend: Reports the context and counts tokens with the model's tokenizer.
        messages: The conversation, system prompt first.
        canvas_index: Position of the latest canvas in ``messages`` (the turn that must stay).
        max_tokens: The answer's token limit the request asks for.
        min_answer_tokens: Room a prompt must leave for the answer (``max_tokens`` if smaller).
        configured_context: ``OMOST_LLM_MAX_MODEL_LEN``, if set.

    Returns:
        The longest conversation that leaves ``min(max_tokens, min_answer_tokens)`` for the
        answer, else the shortest one, with ``max_tokens`` lowered to what the context leaves.
        Unchanged when the context is unknown or the backend cannot count.

    Raises:
        ContextLengthExceededError: Even the shortest conversation fills the whole context.
        LLMServiceError: The backend cannot be reached to count.
    """
    context = context_of(configured_context, await backend.context_length())
    if context is None:
        return Budget(messages, max_tokens)
    reserve = min(max_tokens, min_answer_tokens)
    last: Budget | None = None
    for candidate in [messages, *shortened(messages, canvas_index)]:
        tokens = await backend.count_prompt_tokens(candidate)
        if tokens is None:
            return Budget(messages, max_tokens, context=context)
        last = Budget(
            messages=candidate,
            max_tokens=min(max_tokens, context - tokens),
            prompt_tokens=tokens,
            context=context,
            left_out=len(messages) - len(candidate),
        )
        if tokens + reserve <= context:
            return last
    assert last is not None  # the whole conversation is always a candidate
    if last.max_tokens > 0:
        # No conversation leaves the room wanted: the shortest, with all the room there is. A
        # small canvas may still fit; if not, the length error says what the context left.
        return last
    kept = "" if canvas_index is None else " (keeping only the latest canvas and what follows)"
    raise ContextLengthExceededError(
        f"the model's context is {context} tokens and the messages take {last.prompt_tokens}"
        f"{kept}: no room is left for an answer; shorten the messages",
        param="messages",
    )
