"""Both services refuse a body over their limit with 413 in the envelope, chunked or not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from renderer.service.fake_renderer import canvas_json

from .conftest import LLM_MODEL, Server

pytestmark = pytest.mark.redis

LIMIT = 4096
# Well under uvicorn's read buffer, so the server reads all of it before it closes the
# connection and the client reads the 413 (never a reset).
OVER = 3 * LIMIT


def _render_body() -> dict[str, Any]:
    return {"canvas": canvas_json(), "width": 64, "height": 64, "steps": 2}


def _chat_body() -> dict[str, Any]:
    return {"model": LLM_MODEL, "messages": [{"role": "user", "content": "a cat"}]}


# service -> (route, a valid small body, the status it answers with)
ROUTES: dict[str, tuple[str, dict[str, Any], int]] = {
    "renderer": ("/v1/renders", _render_body(), 202),
    "llm": ("/v1/chat/completions", _chat_body(), 200),
}


@pytest.fixture(params=sorted(ROUTES))
def service(
    request: pytest.FixtureRequest, renderer_server: Server, llm_server: Server
) -> Iterator[tuple[str, str]]:
    start = renderer_server if request.param == "renderer" else llm_server
    with start(max_request_bytes=LIMIT) as url:
        yield request.param, url


def _padded(body: dict[str, Any], size: int) -> bytes:
    """``body`` as JSON of exactly ``size`` bytes (trailing whitespace is valid JSON)."""
    text = json.dumps(body).encode()
    return text + b" " * (size - len(text))


def _chunks(data: bytes, size: int = 1000) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "request_too_large"
    assert str(LIMIT) in error["message"]


def test_chunked_body_over_the_limit_gets_413(service: tuple[str, str]) -> None:
    name, url = service
    route, body, _ = ROUTES[name]
    headers = {"content-type": "application/json"}
    # A generator body goes out chunked, with no Content-Length to trust.
    response = httpx.post(url + route, content=_chunks(_padded(body, OVER)), headers=headers)
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    _assert_too_large(response)


def test_content_length_over_the_limit_gets_413(service: tuple[str, str]) -> None:
    name, url = service
    route, body, _ = ROUTES[name]
    headers = {"content-type": "application/json"}
    response = httpx.post(url + route, content=_padded(body, LIMIT + 1), headers=headers)
    _assert_too_large(response)


def test_body_at_the_limit_is_served(service: tuple[str, str]) -> None:
    name, url = service
    route, body, status = ROUTES[name]
    headers = {"content-type": "application/json"}
    exact = httpx.post(url + route, content=_padded(body, LIMIT), headers=headers)
    assert exact.status_code == status, exact.text
    chunked = httpx.post(url + route, content=_chunks(_padded(body, LIMIT)), headers=headers)
    assert chunked.status_code == status, chunked.text


def test_the_llm_service_counts_the_413_in_its_metrics(llm_server: Server) -> None:
    with llm_server(max_request_bytes=LIMIT) as url:
        route, body, _ = ROUTES["llm"]
        headers = {"content-type": "application/json"}
        httpx.post(url + route, content=_chunks(_padded(body, OVER)), headers=headers)
        metrics = httpx.get(url + "/metrics").text
    assert 'omost_llm_requests_total{route="/v1/chat/completions",status="413"} 1.0' in metrics
