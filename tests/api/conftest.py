"""Fixtures of the API tests: a redis-server, and both services served by real uvicorn servers.

The renderer API runs against a real Redis without a worker; the LLM service runs on the scripted
backend of the LLM tests, so the API layer is exercised without a model.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from llm.fakes import FakeBackend
from omost_llm.config import Settings as LlmSettings
from omost_llm.main import create_app as create_llm_app
from omost_renderer.api import create_app as create_renderer_app
from renderer.service.service_support import make_settings

# Fixtures: imported so that pytest finds them in this conftest.
from renderer.service.service_support import redis_server as redis_server
from renderer.service.service_support import redis_url as redis_url
from renderer.service.threaded_server import serve

LLM_MODEL = "test-model"

Server = Callable[..., AbstractContextManager[str]]


@pytest.fixture
def renderer_server(redis_url: str, tmp_path: Path) -> Server:
    """Start the renderer API with settings overrides: ``with renderer_server(**kw) as url``."""

    def start(**overrides: object) -> AbstractContextManager[str]:
        settings = make_settings(redis_url, tmp_path / "results", **overrides)
        return serve(create_renderer_app(settings))

    return start


@pytest.fixture
def llm_server() -> Server:
    """Start the LLM service on a scripted backend: ``with llm_server(**kw) as url``."""

    def start(**overrides: object) -> AbstractContextManager[str]:
        values: dict[str, object] = {"model": LLM_MODEL, "warmup": False, **overrides}
        settings = LlmSettings(**values)  # type: ignore[arg-type]
        return serve(create_llm_app(settings, FakeBackend()))

    return start
