"""The in-process backend with the `tiny` model: constrained decoding yields valid canvases."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import openai
import pytest
from omost_llm.config import OutputMode, Settings
from omost_llm.main import create_app
from omost_llm.tiny import TINY_VOCAB_FILE
from omost_schema import Canvas

from .conftest import serve_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_settings() -> Settings:
    settings = Settings(model="tiny", backend="transformers", output=OutputMode.JSON, threads=1)
    if not (settings.cache_dir / TINY_VOCAB_FILE).is_file():
        pytest.skip(
            f"{settings.cache_dir / TINY_VOCAB_FILE} missing: run scripts/fetch-tiny-vocab.sh"
        )
    return settings


@pytest.fixture(scope="module")
def tiny_client(tiny_settings: Settings) -> Iterator[openai.OpenAI]:
    with (
        serve_app(create_app(tiny_settings)) as url,
        openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as client,
    ):
        yield client


def test_tiny_json_mode_answers_a_valid_canvas(tiny_client: openai.OpenAI) -> None:
    answer = tiny_client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "a dragon"}],
        seed=0,
        max_tokens=1000,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(answer)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    canvas = Canvas.from_code(text, strict=True)
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason == "stop")
    assert Canvas.model_validate((final.model_extra or {})["omost"]["canvas"]) == canvas
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 10


def test_tiny_too_small_max_tokens_is_a_clear_error(tiny_client: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError, match="max_tokens"):
        tiny_client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "a cat"}], seed=1, max_tokens=8
        )


def test_tiny_same_seed_same_canvas(
    settings_factory: Callable[..., Settings], tiny_client: openai.OpenAI
) -> None:
    def once() -> object:
        answer = tiny_client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "a cat"}], seed=2, max_tokens=1000
        )
        return (answer.model_extra or {})["omost"]["canvas"]

    assert once() == once()
