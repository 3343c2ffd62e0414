"""The page's proxy to the LLM service, on real servers: a client that leaves stops the call."""

from __future__ import annotations

from pathlib import Path

import pytest
from live_server import hanging_llm, post_and_hold, serve_api
from service_support import make_settings

pytestmark = pytest.mark.redis


def test_client_leaving_a_non_streamed_chat_closes_the_llm_call(
    redis_url: str, tmp_path: Path
) -> None:
    with hanging_llm() as llm:
        settings = make_settings(redis_url, tmp_path / "results", llm_url=llm.url)
        with serve_api(settings) as url:
            chat = {"model": "m", "messages": [{"role": "user", "content": "a cat"}]}
            sock = post_and_hold(url, "/llm/v1/chat/completions", chat)
            assert llm.entered.wait(30)
            sock.close()
            assert llm.closed.wait(30), "the LLM call went on after its client left"
