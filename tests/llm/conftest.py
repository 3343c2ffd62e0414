from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from omost_llm.config import Settings
from renderer.service.threaded_server import free_port as free_port
from renderer.service.threaded_server import serve

os.environ.setdefault("HF_HUB_OFFLINE", "1")


# The LLM tests import ``serve_app`` and ``free_port`` from here (``from .conftest import ...``).
serve_app = serve


@pytest.fixture(autouse=True)
def _one_torch_thread() -> None:
    # Other test processes share the machine's cores; torch's default threads slow all of them.
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


@pytest.fixture
def settings_factory() -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {"model": "test-model", "warmup": False, **overrides}
        return Settings(**values)  # type: ignore[arg-type]

    return make
