"""The decoding counters of the in-process backend reach the service's metrics."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import replace

import httpx
from omost_llm.config import Settings
from omost_llm.main import create_app
from omost_llm.protocol import GenerationEnd, GenerationEvent, GenerationRequest

from .conftest import serve_app
from .fakes import FakeBackend


def test_draft_and_forced_tokens_reach_the_metrics(
    settings_factory: Callable[..., Settings],
) -> None:
    class CountingBackend(FakeBackend):
        async def generate(
            self, request: GenerationRequest
        ) -> AsyncGenerator[GenerationEvent, None]:
            async for event in super().generate(request):
                if isinstance(event, GenerationEnd):
                    event = replace(event, draft_tokens=9, accepted_draft_tokens=7, forced_tokens=5)
                yield event

    with serve_app(create_app(settings_factory(), CountingBackend())) as url:
        assert httpx.post(f"{url}/v1/canvases", json={"prompt": "a cat"}).status_code == 200
        metrics = httpx.get(f"{url}/metrics").text
    assert 'omost_llm_draft_tokens_total{result="accepted"} 7.0' in metrics
    assert 'omost_llm_draft_tokens_total{result="rejected"} 2.0' in metrics
    assert "omost_llm_forced_tokens_total 5.0" in metrics
