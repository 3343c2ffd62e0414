"""The in-process backend with the `tiny` model: constrained decoding yields valid canvases."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
from omost_llm.answer import ANSWER_SENTENCE, changed_regions
from omost_llm.backends.transformers_backend import TransformersBackend
from omost_llm.config import OutputMode, Settings
from omost_llm.main import create_app
from omost_llm.protocol import ChatMessage, GenerationEnd, GenerationRequest, SamplingParams
from omost_llm.tiny import TINY_VOCAB_FILE
from omost_schema import Canvas, parse_code
from openai.types.chat import ChatCompletionMessageParam

from .conftest import serve_app

pytestmark = pytest.mark.slow

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "a dragon"}]


def tiny_settings(output: OutputMode) -> Settings:
    settings = Settings(model="tiny", backend="transformers", output=output, threads=1)
    if not (settings.cache_dir / TINY_VOCAB_FILE).is_file():
        pytest.skip(
            f"{settings.cache_dir / TINY_VOCAB_FILE} missing: run scripts/fetch-tiny-vocab.sh"
        )
    return settings


@pytest.fixture(scope="module", params=[OutputMode.CODE, OutputMode.JSON], ids=["code", "json"])
def tiny_client(request: pytest.FixtureRequest) -> Iterator[openai.OpenAI]:
    with (
        serve_app(create_app(tiny_settings(request.param))) as url,
        openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as client,
    ):
        yield client


# Code-only tests share the module's code-mode server.
code_only = pytest.mark.parametrize("tiny_client", [OutputMode.CODE], indirect=True, ids=["code"])


def test_tiny_streams_a_valid_canvas(tiny_client: openai.OpenAI) -> None:
    answer = tiny_client.chat.completions.create(
        model="tiny",
        messages=USER,
        seed=0,
        max_tokens=1000,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(answer)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith(ANSWER_SENTENCE + "```python\n")
    assert text.endswith("```")
    canvas = Canvas.from_code(text, strict=True)
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason == "stop")
    assert Canvas.model_validate((final.model_extra or {})["omost"]["canvas"]) == canvas
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 10


@code_only
def test_tiny_code_mode_answers_with_the_model_text_itself(tiny_client: openai.OpenAI) -> None:
    # The content is what the model wrote under the grammar (not a reprint), fences included.
    answers = []
    for seed in (1, 3):
        answer = tiny_client.chat.completions.create(
            model="tiny",
            messages=USER,
            seed=seed,
            max_tokens=1000,
        )
        content = answer.choices[0].message.content or ""
        omost = (answer.model_extra or {})["omost"]
        block = content.removeprefix(ANSWER_SENTENCE)
        assert block.startswith("```python\n")
        assert parse_code(block, strict=True).canvas == Canvas.model_validate(omost["canvas"])
        assert omost["output"] == "code"
        answers.append(block)
    assert len(set(answers)) == 2
    assert any(block != f"```python\n{parse_code(block).canvas.to_code()}```" for block in answers)


@code_only
def test_tiny_code_mode_edits_the_previous_canvas(tiny_client: openai.OpenAI) -> None:
    first = tiny_client.chat.completions.create(
        model="tiny",
        messages=USER,
        seed=4,
        max_tokens=1000,
    )
    previous = Canvas.model_validate((first.model_extra or {})["omost"]["canvas"])
    edit = tiny_client.chat.completions.create(
        model="tiny",
        messages=[
            *USER,
            {"role": "assistant", "content": first.choices[0].message.content or ""},
            {"role": "user", "content": "make the dragon red"},
        ],
        seed=5,
        max_tokens=1000,
    )
    omost = (edit.model_extra or {})["omost"]
    current = Canvas.from_code(edit.choices[0].message.content or "", strict=True)
    # Changes against the canvas being edited (the earlier answer), not a new canvas.
    # The answer carries each change's region, index and kind (the shared diff has more).
    expected = [
        {"region": change.region, "index": change.index, "change": change.change}
        for change in changed_regions(previous, current)
    ]
    assert omost["changed_regions"] == expected
    assert {"region": "global", "index": None, "change": "added"} not in expected


def test_tiny_too_small_max_tokens_is_a_clear_error(tiny_client: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError, match="max_tokens"):
        tiny_client.chat.completions.create(model="tiny", messages=USER, seed=1, max_tokens=8)


def test_tiny_same_seed_same_canvas(tiny_client: openai.OpenAI) -> None:
    def once() -> object:
        answer = tiny_client.chat.completions.create(
            model="tiny",
            messages=USER,
            seed=2,
            max_tokens=1000,
        )
        return (answer.model_extra or {})["omost"]["canvas"]

    assert once() == once()


@code_only
@pytest.mark.parametrize("seed", [-(2**63), 2**63 - 1])
def test_tiny_takes_every_seed_the_api_accepts(tiny_client: openai.OpenAI, seed: int) -> None:
    # The API's bounds are the signed 64-bit range; torch's generator takes all of it.
    answer = tiny_client.chat.completions.create(
        model="tiny",
        messages=USER,
        seed=seed,
        max_tokens=1000,
    )
    assert Canvas.from_code(answer.choices[0].message.content or "", strict=True)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_tiny_counts_prompts_as_it_generates_them(anyio_backend: str) -> None:
    backend = TransformersBackend(tiny_settings(OutputMode.CODE))
    await backend.start()
    try:
        messages = [ChatMessage("system", "Compose."), ChatMessage("user", "a dragon")]
        # The model config's context: the tiny model's max_position_embeddings.
        assert await backend.context_length() == 8192
        counted = await backend.count_prompt_tokens(messages)
        request = GenerationRequest(messages, OutputMode.CODE, SamplingParams(max_tokens=1))
        events = [event async for event in backend.generate(request)]
        end = events[-1]
        assert isinstance(end, GenerationEnd)
        assert counted == end.prompt_tokens
    finally:
        await backend.close()


def test_tiny_greedy_canvases_are_the_same_with_and_without_drafts() -> None:
    # The service's defaults (jump-forward on, prompt lookup on edit turns) against both off,
    # for a first canvas and an edit turn sent as a chat history: every draft is verified.
    settings = tiny_settings(OutputMode.JSON)
    answers: list[list[str]] = []
    for drafts in (True, False):
        configured = settings.model_copy(
            update={"jump_forward": drafts, "prompt_lookup_tokens": 8 if drafts else 0}
        )
        with (
            serve_app(create_app(configured)) as url,
            openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as client,
        ):

            def ask(
                messages: list[ChatCompletionMessageParam], client: openai.OpenAI = client
            ) -> str:
                answer = client.chat.completions.create(
                    model="tiny",
                    messages=messages,
                    temperature=0.0,
                    max_tokens=1000,
                )
                return answer.choices[0].message.content or ""

            first = ask(USER)
            edit = ask(
                [
                    *USER,
                    {"role": "assistant", "content": first},
                    {"role": "user", "content": "make the dragon red"},
                ]
            )
            answers.append([first, edit])
            metrics = httpx.get(f"{url}/metrics").text
        # Drafts were made and verified with them on, none with them off.
        forced = next(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("omost_llm_forced_tokens_total ")
        )
        assert (forced > 0) == drafts
    assert answers[0] == answers[1]
    for answer in answers[0]:
        Canvas.from_code(answer, strict=True)
