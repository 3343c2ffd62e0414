"""Canvas budgets: per model, lowered per request (never raised), and sent to the backend."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import openai
import pytest
from omost_llm.answer import ANSWER_PREFIX
from omost_llm.canvas_budget import model_budget
from omost_llm.config import OutputMode, Settings
from omost_llm.json_progress import JsonCodeStream
from omost_llm.main import create_app
from omost_schema import COMPACT_BUDGET, FULL_BUDGET, Canvas, CanvasBudget

from .conftest import serve_app
from .fakes import FakeBackend, make_canvas

USER = [{"role": "user", "content": "a dragon over a castle"}]


@pytest.mark.parametrize(
    ("model", "choice", "budget"),
    [
        ("smollm2", "auto", COMPACT_BUDGET),
        ("tiny", "auto", COMPACT_BUDGET),
        ("lllyasviel/omost-llama-3-8b", "auto", FULL_BUDGET),
        ("smollm2", "full", FULL_BUDGET),
        ("lllyasviel/omost-llama-3-8b", "compact", COMPACT_BUDGET),
    ],
)
def test_the_model_budget_is_compact_for_small_models_and_full_for_omost(
    model: str, choice: str, budget: CanvasBudget
) -> None:
    assert model_budget(Settings(model=model, canvas_budget=choice)) == budget  # type: ignore[arg-type]


def test_a_request_lowers_the_budget_and_the_backend_gets_it(
    settings_factory: Callable[..., Settings],
) -> None:
    fake = FakeBackend()
    with (
        serve_app(create_app(settings_factory(), fake)) as url,
        openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as client,
    ):
        client.chat.completions.create(
            model="test-model",
            messages=USER,  # type: ignore[arg-type]
            extra_body={"omost": {"budget": {"max_locals": 2, "max_chars": 120}}},
        )
        canvas = httpx.post(
            f"{url}/v1/canvases", json={"prompt": "a cat", "budget": {"max_tags_chars": 50}}
        )
        assert canvas.status_code == 200
        client.chat.completions.create(model="test-model", messages=USER)  # type: ignore[arg-type]
    assert fake.requests[0].budget == CanvasBudget(max_locals=2, max_chars=120)
    assert fake.requests[1].budget == CanvasBudget(max_tags_chars=50)
    assert fake.requests[2].budget == FULL_BUDGET


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (
            "/v1/chat/completions",
            {"model": "smollm2", "messages": USER, "omost": {"budget": {"max_locals": 4}}},
            "omost.budget.max_locals",
        ),
        ("/v1/canvases", {"prompt": "a cat", "budget": {"max_chars": 101}}, "budget.max_chars"),
    ],
)
def test_a_request_cannot_raise_the_model_budget(
    settings_factory: Callable[..., Settings], path: str, body: dict[str, object], param: str
) -> None:
    fake = FakeBackend()
    with serve_app(create_app(settings_factory(model="smollm2"), fake)) as url:
        answer = httpx.post(f"{url}{path}", json=body)
        beyond = httpx.post(f"{url}{path}", json={**body, "omost": {"budget": {"max_chars": 0}}})
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == param
    assert answer.json()["error"]["code"] == "budget_too_large"
    assert beyond.status_code == 422  # below every minimum, or an unknown field
    assert fake.requests == []


def test_json_mode_system_prompt_shows_the_budget_schema(
    settings_factory: Callable[..., Settings],
) -> None:
    fake = FakeBackend(outputs=[make_canvas().model_dump_json()])
    settings = settings_factory(model="smollm2", output=OutputMode.JSON)
    with serve_app(create_app(settings, fake)) as url:
        httpx.post(f"{url}/v1/canvases", json={"prompt": "a cat"})
    system = fake.requests[0].messages[0].content
    assert '"maxItems":3' in system
    assert "{0,100}" in system


def test_json_code_stream_sends_each_region_as_it_is_finished() -> None:
    canvas = make_canvas(locals_=3)
    text = canvas.model_dump_json()
    stream = JsonCodeStream()
    pieces = [stream.add(text[i : i + 7]) for i in range(0, len(text), 7)]
    sent = [p for p in pieces if p]
    assert len(sent) == 4  # the global region, then each local
    assert "".join(sent) == canvas.to_code()
    assert Canvas.from_code("".join(sent[:2]), strict=True).local_descriptions == [
        canvas.local_descriptions[0]
    ]


def test_json_mode_streams_the_code_of_each_region_before_the_end(
    settings_factory: Callable[..., Settings],
) -> None:
    canvas = make_canvas(locals_=2)
    fake = FakeBackend(outputs=[canvas.model_dump_json()])
    settings = settings_factory(output=OutputMode.JSON)
    with (
        serve_app(create_app(settings, fake)) as url,
        openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as client,
    ):
        chunks = list(
            client.chat.completions.create(
                model="test-model",
                messages=USER,  # type: ignore[arg-type]
                stream=True,
                stream_options={"include_usage": True, "continuous_usage_stats": True},  # type: ignore[typeddict-unknown-key]
            )
        )
    texts = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    content = "".join(texts)
    assert content == ANSWER_PREFIX + canvas.to_code() + "```"
    # Code arrives region by region while generating: more than one non-empty piece of code.
    assert len([t for t in texts if "canvas." in t]) >= 3
    # Every token came with the usage so far, counting up.
    counts = [c.usage.completion_tokens for c in chunks if c.usage is not None]
    assert counts == sorted(counts)
    assert len(counts) > len([t for t in texts if t])
