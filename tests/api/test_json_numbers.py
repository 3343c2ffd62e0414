"""Both services refuse `true` or `"7"` where the document says a number (no silent coercion)."""

from __future__ import annotations

import httpx
import pytest
from renderer.service.fake_renderer import canvas_json

from .conftest import LLM_MODEL, Server

pytestmark = pytest.mark.redis


def test_renderer_refuses_a_boolean_for_a_number(renderer_server: Server) -> None:
    with renderer_server() as url:
        body = {"canvas": canvas_json(), "width": 64, "height": 64}
        assert httpx.post(f"{url}/v1/renders", json={**body, "steps": 2}).status_code == 202
        refused = httpx.post(f"{url}/v1/renders", json={**body, "steps": True})
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == "steps"
        text = httpx.post(f"{url}/v1/renders", json={**body, "seed": "7"})
        assert text.status_code == 400


def test_llm_service_refuses_a_boolean_seed(llm_server: Server) -> None:
    with llm_server() as url:
        refused = httpx.post(f"{url}/v1/canvases", json={"prompt": "a cat", "seed": False})
        assert refused.status_code == 422
        assert refused.json()["error"]["param"] == "seed"
        chat = {"model": LLM_MODEL, "messages": [{"role": "user", "content": "a cat"}]}
        assert httpx.post(f"{url}/v1/chat/completions", json={**chat, "n": "1"}).status_code == 422
        assert httpx.post(f"{url}/v1/chat/completions", json=chat).status_code == 200
