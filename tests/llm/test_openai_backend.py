"""The vLLM and OpenAI-compatible backends against a fake upstream server (pytest-httpserver)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from omost_llm.backends.openai_backend import OpenAIBackend, VLLMBackend
from omost_llm.config import OutputMode, Settings
from omost_llm.errors import BackendUnavailableError, SaturatedError
from omost_llm.protocol import (
    ChatMessage,
    GenerationEnd,
    GenerationRequest,
    SamplingParams,
    TextDelta,
)
from omost_schema import Canvas
from pytest_httpserver import HTTPServer

from .fakes import make_canvas

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def sse(pieces: list[str], finish: str = "stop") -> str:
    events = [
        {"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces
    ]
    events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    events.append({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": len(pieces)}})
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"


REQUEST = GenerationRequest(
    messages=[ChatMessage("user", "a dragon")],
    output=OutputMode.JSON,
    sampling=SamplingParams(max_tokens=100, seed=4),
)


async def collect(backend: OpenAIBackend) -> tuple[str, GenerationEnd]:
    text, end = "", None
    async for event in backend.generate(REQUEST):
        if isinstance(event, TextDelta):
            text += event.text
        else:
            end = event
    assert end is not None
    return text, end


async def test_vllm_json_mode_sends_schema_and_streams(
    httpserver: HTTPServer, settings_factory: Callable[..., Settings]
) -> None:
    body = make_canvas().model_dump_json()
    httpserver.expect_request("/v1/chat/completions", method="POST").respond_with_data(
        sse([body[:20], body[20:]]), content_type="text/event-stream"
    )
    backend = VLLMBackend(settings_factory(base_url=httpserver.url_for("/"), output="json"))
    text, end = await collect(backend)
    await backend.close()
    assert Canvas.model_validate_json(text) == make_canvas()
    assert (end.finish_reason, end.prompt_tokens, end.completion_tokens) == ("stop", 7, 2)
    sent = json.loads(httpserver.log[0][0].data)
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["seed"] == 4
    assert sent["stream"] is True
    assert sent["model"] == "test-model"


async def test_openai_without_json_schema_is_unconstrained(
    httpserver: HTTPServer, settings_factory: Callable[..., Settings]
) -> None:
    httpserver.expect_request("/v1/chat/completions").respond_with_data(
        sse(["x"]), content_type="text/event-stream"
    )
    settings = settings_factory(
        base_url=httpserver.url_for("/"), output="json", openai_json_schema=False
    )
    backend = OpenAIBackend(settings)
    assert not backend.constrained
    await collect(backend)
    await backend.close()
    assert "response_format" not in json.loads(httpserver.log[0][0].data)


async def test_upstream_429_is_saturated(
    httpserver: HTTPServer, settings_factory: Callable[..., Settings]
) -> None:
    httpserver.expect_request("/v1/chat/completions").respond_with_data(
        "busy", status=429, headers={"Retry-After": "3"}
    )
    backend = VLLMBackend(settings_factory(base_url=httpserver.url_for("/"), output="json"))
    with pytest.raises(SaturatedError) as caught:
        await collect(backend)
    await backend.close()
    assert caught.value.retry_after == 3


async def test_unreachable_upstream_is_unavailable_and_not_ready(
    settings_factory: Callable[..., Settings],
) -> None:
    from .conftest import free_port

    backend = VLLMBackend(
        settings_factory(base_url=f"http://127.0.0.1:{free_port()}", output="json")
    )
    assert not await backend.ready()
    with pytest.raises(BackendUnavailableError):
        await collect(backend)
    await backend.close()


async def test_vllm_reports_its_context_and_counts_with_its_tokenizer(
    httpserver: HTTPServer, settings_factory: Callable[..., Settings]
) -> None:
    models = {"object": "list", "data": [{"id": "test-model", "max_model_len": 8192}]}
    httpserver.expect_request("/v1/models").respond_with_json(models)
    httpserver.expect_request("/tokenize", method="POST").respond_with_json(
        {"count": 42, "max_model_len": 8192, "tokens": list(range(42))}
    )
    backend = VLLMBackend(settings_factory(base_url=httpserver.url_for("/")))
    assert await backend.context_length() == 8192
    assert await backend.context_length() == 8192
    assert await backend.count_prompt_tokens(REQUEST.messages) == 42
    await backend.close()
    # The context is asked once; the count uses vLLM's chat template and generation prompt.
    assert [entry[0].path for entry in httpserver.log] == ["/v1/models", "/tokenize"]
    sent = json.loads(httpserver.log[1][0].data)
    assert sent == {
        "model": "test-model",
        "messages": [{"role": "user", "content": "a dragon"}],
        "add_generation_prompt": True,
    }


async def test_vllm_tokenize_errors_are_service_errors(
    httpserver: HTTPServer, settings_factory: Callable[..., Settings]
) -> None:
    httpserver.expect_request("/tokenize").respond_with_data("down", status=503)
    backend = VLLMBackend(settings_factory(base_url=httpserver.url_for("/")))
    with pytest.raises(BackendUnavailableError):
        await backend.count_prompt_tokens(REQUEST.messages)
    await backend.close()


async def test_other_openai_servers_leave_the_context_to_themselves(
    settings_factory: Callable[..., Settings],
) -> None:
    backend = OpenAIBackend(settings_factory())
    assert await backend.context_length() is None
    assert await backend.count_prompt_tokens(REQUEST.messages) is None
    await backend.close()
