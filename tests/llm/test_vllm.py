"""`omost-llm serve` with the `vllm` backend against a real vLLM server (CPU build), both modes.

vLLM runs from `.venv-vllm` (`make vllm-venv`, which `make test` runs) and serves the `tiny`
model folder, started once per test session. Without that environment the tests are skipped,
except under CI, where its absence is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from omost_llm.answer import ANSWER_SENTENCE
from omost_llm.config import OutputMode, Settings
from omost_llm.tiny import TINY_VOCAB_FILE, tiny_model_dir
from omost_schema import Canvas, parse_code

from .conftest import free_port
from .processes import VLLM_PYTHON, omost_llm_command, running, vllm_command

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(900)]

USER = [{"role": "user", "content": "a dragon over a castle"}]
# Random weights under the grammar: the canvas length varies with the seed; these fit.
MAX_TOKENS = 1200


@pytest.fixture(scope="session")
def vllm_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not VLLM_PYTHON.is_file():
        reason = f"{VLLM_PYTHON} is missing: build it with `make vllm-venv`"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI runs the vLLM integration tests)")
        pytest.skip(reason)
    settings = Settings(model="tiny")
    if not (settings.cache_dir / TINY_VOCAB_FILE).is_file():
        pytest.fail(f"{settings.cache_dir / TINY_VOCAB_FILE} missing: run `make install`")
    model_dir = tiny_model_dir(settings.cache_dir, settings.seed)
    port = free_port()
    env = {
        "HF_HUB_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }
    log = tmp_path_factory.mktemp("vllm") / "vllm.log"
    url = f"http://127.0.0.1:{port}"
    with running(vllm_command(model_dir, "tiny", port), env, f"{url}/health", log, 600):
        yield url


@pytest.fixture(scope="module", params=[OutputMode.CODE, OutputMode.JSON], ids=["code", "json"])
def service(
    request: pytest.FixtureRequest, vllm_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, OutputMode]]:
    port = free_port()
    env = {
        "OMOST_LLM_BACKEND": "vllm",
        "OMOST_LLM_MODEL": "tiny",
        "OMOST_LLM_BASE_URL": vllm_url,
        "OMOST_LLM_OUTPUT": request.param.value,
    }
    log = tmp_path_factory.mktemp("omost-llm") / "omost-llm.log"
    url = f"http://127.0.0.1:{port}"
    # /ready answers once the warm-up request has made vLLM compile the grammar.
    with running(omost_llm_command(port), env, f"{url}/ready", log, 300):
        yield url, request.param


@pytest.fixture
def client(service: tuple[str, OutputMode]) -> Iterator[openai.OpenAI]:
    url, _ = service
    with openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as client:
        yield client


def test_chat_answers_a_valid_canvas(
    client: openai.OpenAI, service: tuple[str, OutputMode]
) -> None:
    answer = client.chat.completions.create(
        model="tiny",
        messages=USER,  # type: ignore[arg-type]
        seed=0,
        max_tokens=MAX_TOKENS,
    )
    content = answer.choices[0].message.content or ""
    omost = (answer.model_extra or {})["omost"]
    assert content.startswith(ANSWER_SENTENCE + "```python\n")
    assert parse_code(content, strict=True).canvas == Canvas.model_validate(omost["canvas"])
    assert omost["output"] == service[1].value
    assert omost["retries"] == 0
    assert answer.usage is not None
    assert answer.usage.completion_tokens > 10


def test_chat_stream_sends_the_canvas_usage_and_done(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="tiny",
        messages=USER,  # type: ignore[arg-type]
        seed=1,
        max_tokens=MAX_TOKENS,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    assert len(final) == 1
    canvas = Canvas.model_validate((final[0].model_extra or {})["omost"]["canvas"])
    assert Canvas.from_code(text, strict=True) == canvas
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 10


def test_ready_reports_the_upstream(service: tuple[str, OutputMode]) -> None:
    url, _ = service
    assert httpx.get(f"{url}/ready", timeout=30).status_code == 200
    assert "omost_llm_requests_total" in httpx.get(f"{url}/metrics").text


def test_the_model_folder_carries_its_tokenizer() -> None:
    # vLLM loads the tokenizer from the folder it serves.
    settings = Settings(model="tiny")
    if not (settings.cache_dir / TINY_VOCAB_FILE).is_file():
        pytest.skip("the tiny model's vocabulary is missing")
    folder: Path = tiny_model_dir(settings.cache_dir, settings.seed)
    assert (folder / "tokenizer.json").is_file()
    assert (folder / "config.json").is_file()
