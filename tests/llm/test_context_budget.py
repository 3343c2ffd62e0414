"""Fitting a conversation into the model's context, against a fake tokenizer."""

from __future__ import annotations

import pytest
from omost_llm.context_budget import Budget, context_of, fit, shortened
from omost_llm.errors import ContextLengthExceededError
from omost_llm.protocol import ChatMessage

from .fakes import FakeBackend, fenced, make_canvas, prompt_tokens

pytestmark = pytest.mark.anyio

CANVAS = fenced(make_canvas())
HISTORY = [
    ChatMessage("system", "s" * 400),
    ChatMessage("user", "a dragon"),
    ChatMessage("assistant", CANVAS),
    ChatMessage("user", "make it red"),
    ChatMessage("assistant", CANVAS),
    ChatMessage("user", "make it blue"),
]
LATEST = 4  # the index of the latest canvas in HISTORY


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def budget(
    backend: FakeBackend, max_tokens: int, configured_context: int | None = None
) -> Budget:
    return await fit(
        backend,
        HISTORY,
        LATEST,
        max_tokens=max_tokens,
        min_answer_tokens=100,
        configured_context=configured_context,
    )


async def test_a_conversation_that_fits_is_sent_whole_with_max_tokens_clamped() -> None:
    tokens = prompt_tokens(HISTORY)
    backend = FakeBackend(context=tokens + 300)
    fitted = await budget(backend, max_tokens=4096)
    assert fitted.messages == HISTORY
    assert fitted.left_out == 0
    assert fitted.prompt_tokens == tokens
    # What the context leaves, not the 4096 asked for.
    assert fitted.max_tokens == 300


async def test_max_tokens_under_what_is_left_is_kept() -> None:
    fitted = await budget(FakeBackend(context=100_000), max_tokens=500)
    assert fitted.max_tokens == 500
    assert fitted.messages == HISTORY


async def test_older_turns_are_left_out_keeping_the_latest_canvas_and_its_request() -> None:
    kept = [HISTORY[0], *HISTORY[LATEST - 1 :]]
    backend = FakeBackend(context=prompt_tokens(kept) + 100)
    fitted = await budget(backend, max_tokens=4096)
    assert fitted.messages == kept
    assert fitted.left_out == 2
    assert fitted.max_tokens == 100


async def test_the_request_of_the_latest_canvas_goes_when_still_too_long() -> None:
    kept = [HISTORY[0], *HISTORY[LATEST:]]
    backend = FakeBackend(context=prompt_tokens(kept) + 100)
    fitted = await budget(backend, max_tokens=4096)
    assert fitted.messages == kept
    assert [m.role for m in fitted.messages] == ["system", "assistant", "user"]
    assert fitted.left_out == 3


async def test_short_of_the_wanted_room_the_shortest_conversation_gets_all_there_is() -> None:
    kept = [HISTORY[0], *HISTORY[LATEST:]]
    backend = FakeBackend(context=prompt_tokens(kept) + 99)
    fitted = await budget(backend, max_tokens=4096)
    assert fitted.messages == kept
    assert fitted.max_tokens == 99


async def test_a_new_canvas_short_of_the_wanted_room_gets_all_there_is() -> None:
    backend = FakeBackend(context=prompt_tokens(HISTORY[:2]) + 10)
    fitted = await fit(
        backend,
        HISTORY[:2],
        None,
        max_tokens=4096,
        min_answer_tokens=100,
        configured_context=None,
    )
    assert fitted.messages == HISTORY[:2]
    assert fitted.max_tokens == 10


async def test_no_room_at_all_even_for_the_latest_canvas_is_a_context_error() -> None:
    kept = [HISTORY[0], *HISTORY[LATEST:]]
    backend = FakeBackend(context=prompt_tokens(kept))
    with pytest.raises(ContextLengthExceededError) as caught:
        await budget(backend, max_tokens=4096)
    assert caught.value.status_code == 400
    assert caught.value.code == "context_length_exceeded"
    assert f"the messages take {prompt_tokens(kept)}" in caught.value.message


async def test_the_answer_room_is_max_tokens_when_smaller() -> None:
    # 50 tokens asked for: a prompt leaving 60 fits, though min_answer_tokens is 100.
    backend = FakeBackend(context=prompt_tokens(HISTORY) + 60)
    fitted = await budget(backend, max_tokens=50)
    assert fitted.messages == HISTORY
    assert fitted.max_tokens == 50


async def test_unknown_context_or_no_tokenizer_leaves_the_conversation_alone() -> None:
    for backend in (FakeBackend(context=None), FakeBackend(context=10, counts=False)):
        fitted = await budget(backend, max_tokens=4096)
        assert fitted.messages == HISTORY
        assert fitted.max_tokens == 4096


async def test_the_configured_context_applies_when_smaller() -> None:
    tokens = prompt_tokens(HISTORY)
    fitted = await budget(FakeBackend(context=None), 4096, configured_context=tokens + 200)
    assert fitted.max_tokens == 200
    fitted = await budget(FakeBackend(context=tokens + 200), 4096, configured_context=10**6)
    assert fitted.max_tokens == 200


def test_context_of_takes_the_smaller_known_value() -> None:
    assert context_of(None, None) is None
    assert context_of(8192, None) == 8192
    assert context_of(None, 4096) == 4096
    assert context_of(8192, 4096) == 4096


def test_nothing_to_shorten_without_an_earlier_canvas() -> None:
    assert shortened(HISTORY, None) == []
    # The latest canvas right after the system prompt and its request: nothing older to drop.
    assert shortened(HISTORY[:4], 2) == [[HISTORY[0], *HISTORY[2:4]]]
