"""The HTTP API against a scripted backend, driven by the official openai SDK over a real server."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from omost_llm.config import OutputMode, Settings
from omost_llm.errors import BackendUnavailableError, SaturatedError
from omost_llm.main import create_app
from omost_schema import Canvas

from .conftest import serve_app
from .fakes import FakeBackend, fenced, make_canvas, prompt_tokens

USER = [{"role": "user", "content": "a dragon over a castle"}]


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def service(
    fake: FakeBackend, settings_factory: Callable[..., Settings], request: pytest.FixtureRequest
) -> Iterator[str]:
    overrides = getattr(request, "param", {})
    with serve_app(create_app(settings_factory(**overrides), fake)) as url:
        yield url


@pytest.fixture
def client(service: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{service}/v1", api_key="unused", max_retries=0) as client:
        yield client


def test_chat_returns_omost_answer_and_canvas(client: openai.OpenAI, fake: FakeBackend) -> None:
    answer = client.chat.completions.create(model="test-model", messages=USER, seed=3)  # type: ignore[arg-type]
    content = answer.choices[0].message.content or ""
    assert content == f"Here is the canvas, as Omost code:\n\n{fenced(make_canvas())}"
    assert "```python\n# Initialize the canvas" in content
    assert content.endswith("```")
    assert Canvas.from_code(content, strict=True) == make_canvas()
    extra = answer.model_extra or {}
    assert Canvas.model_validate(extra["omost"]["canvas"]) == make_canvas()
    assert extra["omost"]["changed_regions"][0] == {
        "region": "global",
        "index": None,
        "change": "added",
    }
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == 10
    assert answer.choices[0].finish_reason == "stop"
    sent = fake.requests[0]
    assert sent.messages[0].role == "system"
    assert "class Canvas" in sent.messages[0].content
    assert sent.sampling.seed == 3
    assert sent.sampling.temperature == 0.6
    assert sent.sampling.top_p == 0.9


def test_chat_stream_sends_chunks_usage_and_done(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="test-model",
        messages=USER,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert Canvas.from_code(text, strict=True) == make_canvas()
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    assert len(final) == 1
    assert "omost" in (final[0].model_extra or {})
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


def test_multi_turn_edit_reports_changed_region(client: openai.OpenAI, fake: FakeBackend) -> None:
    fake.outputs = [fenced(make_canvas("blue"))]
    messages = [
        *USER,
        {"role": "assistant", "content": f"Sure.\n```python\n{make_canvas().to_code()}```"},
        {"role": "user", "content": "make the dragon blue"},
    ]
    answer = client.chat.completions.create(model="test-model", messages=messages)  # type: ignore[arg-type]
    extra = (answer.model_extra or {})["omost"]
    assert extra["changed_regions"] == [{"region": "local", "index": 0, "change": "modified"}]
    assert [m.role for m in fake.requests[0].messages] == ["system", "user", "assistant", "user"]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"model": "other"}, openai.NotFoundError),
        ({"n": 2}, openai.BadRequestError),
        ({"max_tokens": 10**6}, openai.BadRequestError),
        ({"temperature": 5.0}, openai.UnprocessableEntityError),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, openai.BadRequestError),
        ({"messages": USER * 100}, openai.BadRequestError),
        ({"messages": [{"role": "user", "content": "x" * 1_100_000}]}, openai.APIStatusError),
    ],
)
def test_bad_requests_get_openai_errors(
    client: openai.OpenAI, kwargs: dict[str, object], error: type[openai.APIStatusError]
) -> None:
    request: dict[str, object] = {"model": "test-model", "messages": USER, **kwargs}
    with pytest.raises(error) as caught:
        client.chat.completions.create(**request)  # type: ignore[call-overload]
    body = caught.value.body
    assert isinstance(body, dict)
    assert {"message", "type", "code"} <= set(body)
    assert caught.value.status_code in (400, 404, 413, 422)


def test_saturated_backend_answers_429_with_retry_after(
    client: openai.OpenAI, fake: FakeBackend
) -> None:
    fake.error = SaturatedError("busy", retry_after=7)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="test-model", messages=USER)  # type: ignore[arg-type]
    assert caught.value.response.headers["retry-after"] == "7"


def test_unavailable_backend_answers_503_before_streaming(
    client: openai.OpenAI, fake: FakeBackend
) -> None:
    fake.error = BackendUnavailableError("down", retry_after=1)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="test-model", messages=USER, stream=True)  # type: ignore[arg-type]
    assert caught.value.status_code == 503
    assert caught.value.response.headers["retry-after"] == "1"


def test_length_finish_is_an_error(client: openai.OpenAI, fake: FakeBackend) -> None:
    fake.finish_reason = "length"
    with pytest.raises(openai.UnprocessableEntityError, match="max_tokens"):
        client.chat.completions.create(model="test-model", messages=USER, max_tokens=20)  # type: ignore[arg-type]


def test_unconstrained_invalid_answer_is_retried_with_the_error(
    client: openai.OpenAI, fake: FakeBackend
) -> None:
    fake.constrained = False
    fake.outputs = ["canvas = Canvas(\n", make_canvas().to_code()]
    answer = client.chat.completions.create(model="test-model", messages=USER)  # type: ignore[arg-type]
    assert (answer.model_extra or {})["omost"]["retries"] == 1
    retry = fake.requests[1].messages
    assert retry[-2].content == "canvas = Canvas(\n"
    assert retry[-1].role == "user"
    assert "not a valid canvas" in retry[-1].content


def test_unconstrained_invalid_twice_is_502(client: openai.OpenAI, fake: FakeBackend) -> None:
    fake.constrained = False
    fake.outputs = ["no canvas here"]
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="test-model", messages=USER)  # type: ignore[arg-type]
    assert caught.value.status_code == 502
    assert len(fake.requests) == 2


def test_unconstrained_near_miss_names_are_corrected(
    client: openai.OpenAI, fake: FakeBackend
) -> None:
    fake.constrained = False
    fake.outputs = [make_canvas().to_code().replace("'in the center'", "'in the centre'")]
    answer = client.chat.completions.create(model="test-model", messages=USER)  # type: ignore[arg-type]
    extra = (answer.model_extra or {})["omost"]
    assert extra["retries"] == 0
    assert {"original": "in the centre", "corrected": "in the center"}.items() <= extra[
        "corrections"
    ][0].items()
    assert Canvas.from_code(answer.choices[0].message.content or "", strict=True) == make_canvas()


def test_concurrent_requests_all_succeed(client: openai.OpenAI, fake: FakeBackend) -> None:
    fake.delay_s = 0.005

    def one(seed: int) -> str:
        answer = client.chat.completions.create(model="test-model", messages=USER, seed=seed)  # type: ignore[arg-type]
        return answer.choices[0].message.content or ""

    with ThreadPoolExecutor(8) as pool:
        contents = list(pool.map(one, range(16)))
    assert all(Canvas.from_code(c, strict=True) == make_canvas() for c in contents)
    assert sorted(r.sampling.seed for r in fake.requests) == list(range(16))


def test_client_disconnect_cancels_generation(client: openai.OpenAI, fake: FakeBackend) -> None:
    fake.delay_s = 0.05
    stream = client.chat.completions.create(model="test-model", messages=USER, stream=True)  # type: ignore[arg-type]
    for _ in range(3):
        next(iter(stream))
    stream.close()
    deadline = time.monotonic() + 20
    while fake.cancelled == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake.cancelled == 1
    assert fake.completed == 0


def test_ready_flips_with_the_backend(service: str, fake: FakeBackend) -> None:
    assert httpx.get(f"{service}/ready").status_code == 200
    fake.is_ready = False
    down = httpx.get(f"{service}/ready")
    assert down.status_code == 503
    assert down.json()["error"]["code"] == "backend_unavailable"
    assert "retry-after" in down.headers
    fake.is_ready = True
    assert httpx.get(f"{service}/ready").status_code == 200
    assert httpx.get(f"{service}/health").json() == {"status": "ok"}


def test_canvases_route_returns_json_and_code(service: str, fake: FakeBackend) -> None:
    fake.outputs = [fenced(make_canvas("blue"))]
    body = {"prompt": "make it blue", "previous_canvas": make_canvas().model_dump(), "seed": 1}
    answer = httpx.post(f"{service}/v1/canvases", json=body, timeout=30).json()
    assert Canvas.model_validate(answer["canvas"]) == make_canvas("blue")
    assert Canvas.from_code(answer["code"], strict=True) == make_canvas("blue")
    assert answer["changed_regions"] == [{"region": "local", "index": 0, "change": "modified"}]
    assert answer["usage"]["total_tokens"] > 0
    assert answer["timings"]["total_s"] > 0
    assert fake.requests[0].messages[-2].role == "assistant"


def test_canvases_route_rejects_unknown_fields(service: str) -> None:
    answer = httpx.post(f"{service}/v1/canvases", json={"prompt": "x", "colour": 1})
    assert answer.status_code == 422
    assert answer.json()["error"]["type"] == "invalid_request_error"


def test_models_and_metrics(client: openai.OpenAI, service: str) -> None:
    assert [m.id for m in client.models.list()] == ["test-model"]
    client.chat.completions.create(model="test-model", messages=USER)  # type: ignore[arg-type]
    metrics = httpx.get(f"{service}/metrics").text
    assert 'omost_llm_requests_total{route="/v1/chat/completions",status="200"} 1.0' in metrics
    assert "omost_llm_time_to_first_token_seconds_count 1.0" in metrics
    assert 'omost_llm_tokens_total{kind="prompt"} 10.0' in metrics


@pytest.mark.parametrize("service", [{"output": OutputMode.JSON}], indirect=True)
def test_json_mode_prints_omost_code(client: openai.OpenAI, fake: FakeBackend) -> None:
    fake.outputs = [make_canvas().model_dump_json()]
    answer = client.chat.completions.create(model="test-model", messages=USER, stream=True)  # type: ignore[arg-type]
    text = "".join(c.choices[0].delta.content or "" for c in answer if c.choices)
    assert Canvas.from_code(text, strict=True) == make_canvas()
    assert "JSON schema" in fake.requests[0].messages[0].content


@pytest.mark.parametrize("service", [{"request_timeout_s": 0.3}], indirect=True)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_generation_over_the_time_limit_is_stopped_with_504(
    service: str, fake: FakeBackend, stream: bool
) -> None:
    # Each delta takes 0.1 s and the canvas has many: the limit falls mid-generation.
    fake.delay_s = 0.1
    body = {"model": "test-model", "messages": USER, "stream": stream}
    with httpx.stream("POST", f"{service}/v1/chat/completions", json=body, timeout=30) as answer:
        text = answer.read().decode()
    if stream:
        # Headers went out with the first delta: the error arrives as the stream's last event.
        assert answer.status_code == 200
        assert '"code":"backend_timeout"' in text.replace(" ", "")
    else:
        assert answer.status_code == 504
        assert answer.json()["error"]["code"] == "backend_timeout"
    assert fake.cancelled == 1
    assert fake.completed == 0


def test_canvases_edit_sends_the_canvas_as_the_models_own_answer(
    service: str, fake: FakeBackend
) -> None:
    previous = make_canvas()
    body = {"prompt": "make it blue", "previous_canvas": previous.model_dump()}
    assert httpx.post(f"{service}/v1/canvases", json=body, timeout=30).status_code == 200
    sent = fake.requests[0].messages
    assert [m.role for m in sent] == ["system", "user", "assistant", "user"]
    # As in Omost's chats: a request, then the answer as the model wrote it, a fenced block.
    assert sent[1].content == previous.global_description.description
    assert sent[2].content == f"```python\n{previous.to_code()}```"
    assert sent[3].content == "make it blue"


def test_chat_sends_earlier_answers_as_the_model_wrote_them(
    client: openai.OpenAI, fake: FakeBackend
) -> None:
    first = client.chat.completions.create(model="test-model", messages=USER)  # type: ignore[arg-type]
    content = first.choices[0].message.content or ""
    messages = [*USER, {"role": "assistant", "content": content}, {"role": "user", "content": "x"}]
    client.chat.completions.create(model="test-model", messages=messages)  # type: ignore[arg-type]
    # The service's own sentence is not the model's: the block goes back alone.
    assert fake.requests[1].messages[2].content == fenced(make_canvas())


def _edit_history(turns: int) -> list[dict[str, str]]:
    messages = list(USER)
    for turn in range(turns):
        answer = f"Here it is.\n{fenced(make_canvas(['red', 'blue', 'green'][turn % 3]))}"
        messages += [
            {"role": "assistant", "content": answer},
            {"role": "user", "content": f"edit {turn}"},
        ]
    return messages


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_history_over_the_context_leaves_out_older_turns_and_says_so(
    service: str, fake: FakeBackend, stream: bool
) -> None:
    history = _edit_history(3)
    body = {"model": "test-model", "messages": history, "max_tokens": 100, "stream": stream}
    assert httpx.post(f"{service}/v1/chat/completions", json=body, timeout=30).is_success
    whole = fake.requests[0].messages
    assert fake.requests[0].sampling.max_tokens == 100
    assert len(whole) == 8
    kept = [whole[0], *whole[-3:]]  # system, the latest canvas's request, the canvas, the edit
    fake.context = prompt_tokens(kept) + 100
    answer = httpx.post(f"{service}/v1/chat/completions", json=body, timeout=30)
    assert answer.status_code == 200
    if stream:
        events = [line[6:] for line in answer.text.splitlines() if line.startswith("data: {")]
        omost = next(json.loads(e)["omost"] for e in events if '"omost":{' in e)
    else:
        omost = answer.json()["omost"]
    assert omost["truncated_history"] is True
    assert omost["messages_left_out"] == 4
    assert fake.requests[1].messages == kept
    assert fake.requests[1].sampling.max_tokens == 100
    metrics = httpx.get(f"{service}/metrics").text
    assert "omost_llm_truncated_histories_total 1.0" in metrics


def test_max_tokens_is_clamped_to_what_the_context_leaves(
    client: openai.OpenAI, fake: FakeBackend
) -> None:
    client.chat.completions.create(model="test-model", messages=USER)  # type: ignore[arg-type]
    fake.context = prompt_tokens(fake.requests[0].messages) + 3000
    answer = client.chat.completions.create(model="test-model", messages=USER)  # type: ignore[arg-type]
    assert fake.requests[0].sampling.max_tokens == 4096
    assert fake.requests[1].sampling.max_tokens == 3000
    omost = (answer.model_extra or {})["omost"]
    assert omost["truncated_history"] is False
    assert omost["messages_left_out"] == 0


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/v1/canvases"])
def test_a_request_that_cannot_fit_the_context_is_a_400(
    service: str, fake: FakeBackend, route: str
) -> None:
    fake.context = 200  # less than the system prompt alone
    body: dict[str, object] = (
        {"model": "test-model", "messages": _edit_history(2)}
        if route == "/v1/chat/completions"
        else {"prompt": "make it blue", "previous_canvas": make_canvas().model_dump()}
    )
    answer = httpx.post(f"{service}{route}", json=body, timeout=30)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert error["param"] == "messages"
    assert "the model's context is 200 tokens" in error["message"]
    assert fake.requests == []


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/v1/canvases"])
@pytest.mark.parametrize("seed", [2**70, 2**63, -(2**63) - 1])
def test_a_seed_outside_int64_is_refused(
    service: str, fake: FakeBackend, route: str, seed: int
) -> None:
    body: dict[str, object] = {"seed": seed}
    body |= (
        {"model": "test-model", "messages": USER}
        if route == "/v1/chat/completions"
        else {"prompt": "a dragon"}
    )
    answer = httpx.post(f"{service}{route}", json=body, timeout=30)
    assert answer.status_code == 422
    assert answer.json()["error"]["param"] == "seed"
    assert fake.requests == []


@pytest.mark.parametrize("seed", [-(2**63), 2**63 - 1])
def test_the_int64_bounds_are_accepted_seeds(
    client: openai.OpenAI, fake: FakeBackend, seed: int
) -> None:
    client.chat.completions.create(model="test-model", messages=USER, seed=seed)  # type: ignore[arg-type]
    assert fake.requests[0].sampling.seed == seed


def test_a_route_asked_with_another_method_answers_405_with_allow(service: str) -> None:
    answer = httpx.delete(f"{service}/v1/chat/completions", timeout=10)
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "method_not_allowed"
