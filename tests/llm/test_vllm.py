"""`omost-llm serve` with the `vllm` backend against a real vLLM server (CPU build), both modes.

vLLM runs from `.venv-vllm` (`make vllm-venv`, which `make test` runs) and serves the `tiny`
model folder, started once per test session. Without that environment the tests are skipped,
except under CI, where its absence is a failure.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from omost_llm.answer import ANSWER_SENTENCE
from omost_llm.backends.openai_backend import VLLMBackend
from omost_llm.config import OutputMode, Settings
from omost_llm.metrics import Metrics
from omost_llm.serving import Composer
from omost_llm.tiny import TINY_VOCAB_FILE, tiny_model_dir
from omost_schema import COMPACT_BUDGET, Canvas, parse_code
from openai.types.chat import ChatCompletion

from .conftest import free_port
from .fakes import FakeBackend, make_canvas
from .processes import NGRAM_SPECULATION, VLLM_PYTHON, omost_llm_command, running, vllm_command

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


# The vLLM server's --max-model-len (tests/llm/processes.py): a small context.
CONTEXT = 2048
# Each turn's answer: room for one tiny-model canvas. The system prompt (331 tokens), the longest
# such canvas and an edit always fit with it, so every turn can be answered.
EDIT_TOKENS = 700
# Edits as people write them, a sentence each: the history outgrows the context within 10 turns.
EDITS = [
    "Make it night: a full moon behind the towers, the dragon lit from below by the torches of "
    "the walls, deep blue shadows over the hills.",
    "Add a knight on a white horse in the lower left, lance raised towards the dragon, a red "
    "cloak blowing in the wind behind him.",
    "Make the dragon red with golden horns, its wings spread wide across the whole upper half of "
    "the picture, smoke rising from its jaws.",
    "Move the castle to the right and put a river in front of it, with a wooden bridge and a few "
    "small boats tied along the bank.",
]


def edit_turn(
    client: openai.OpenAI, messages: list[dict[str, str]], seeds: Iterator[int]
) -> ChatCompletion:
    """One turn; a canvas longer than EDIT_TOKENS (the random model rambles now and then) is
    asked again with the next seed. Any other error fails the test."""
    for _ in range(4):
        try:
            return client.chat.completions.create(
                model="tiny",
                messages=messages,  # type: ignore[arg-type]
                seed=next(seeds),
                max_tokens=EDIT_TOKENS,
            )
        except openai.UnprocessableEntityError as exc:
            if exc.code != "max_tokens_exhausted":
                raise
    raise AssertionError("four canvases in a row did not fit in max_tokens")


@pytest.mark.parametrize("service", [OutputMode.CODE], indirect=True, ids=["code"])
def test_ten_edit_turns_fit_a_small_context(client: openai.OpenAI) -> None:
    messages: list[dict[str, str]] = list(USER)
    seeds = itertools.count()
    left_out = []
    for turn in range(10):
        answer = edit_turn(client, messages, seeds)
        omost = (answer.model_extra or {})["omost"]
        assert answer.usage is not None
        # The context vLLM reports bounds the prompt and the answer's max_tokens together.
        assert answer.usage.prompt_tokens + EDIT_TOKENS <= CONTEXT
        assert omost["truncated_history"] is (omost["messages_left_out"] > 0)
        left_out.append(omost["messages_left_out"])
        messages += [
            {"role": "assistant", "content": answer.choices[0].message.content or ""},
            {"role": "user", "content": EDITS[turn % len(EDITS)]},
        ]
    # The whole history went while it fitted; then older turns were left out, every turn answered.
    assert left_out[0] == 0
    assert left_out[-1] > 0


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


def test_ngram_speculation_with_structured_outputs_answers_valid_canvases(
    tmp_path: Path,
) -> None:
    # A second vLLM server, with n-gram speculative decoding as compose and deploy/ turn it on:
    # an edit turn under the grammar the `vllm` backend sends still answers a valid canvas,
    # and vLLM did verify drafts.
    if not VLLM_PYTHON.is_file():
        pytest.skip(f"{VLLM_PYTHON} is missing: build it with `make vllm-venv`")
    settings = Settings(model="tiny", backend="vllm", output=OutputMode.CODE)
    model_dir = tiny_model_dir(settings.cache_dir, settings.seed)
    port = free_port()
    env = {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1"}
    url = f"http://127.0.0.1:{port}"
    command = vllm_command(model_dir, "tiny", port, ("--speculative-config", NGRAM_SPECULATION))
    composer = Composer(FakeBackend(), settings, Metrics())
    edit = composer.canvas_conversation("make it blue", make_canvas(locals_=2))
    body = {
        "model": "tiny",
        "messages": [{"role": m.role, "content": m.content} for m in edit.messages],
        "max_tokens": MAX_TOKENS,
        **VLLMBackend(settings).constraint_fields(COMPACT_BUDGET),
    }
    with running(command, env, f"{url}/health", tmp_path / "vllm.log", 600):
        for seed, temperature in ((0, 0.0), (1, 0.8)):
            answer = httpx.post(
                f"{url}/v1/chat/completions",
                json={**body, "seed": seed, "temperature": temperature},
                timeout=600,
            )
            assert answer.status_code == 200, answer.text
            choice = answer.json()["choices"][0]
            assert choice["finish_reason"] == "stop"
            canvas = parse_code(choice["message"]["content"], strict=True).canvas
            assert len(canvas.local_descriptions) <= COMPACT_BUDGET.max_locals
        metrics = httpx.get(f"{url}/metrics").text
    drafts = [
        line
        for line in metrics.splitlines()
        if line.startswith("vllm:spec_decode_num_draft_tokens_total")
    ]
    assert drafts
    assert float(drafts[0].split()[-1]) > 0
