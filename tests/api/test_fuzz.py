"""Property-based fuzzing of both services from their OpenAPI documents (schemathesis).

Each operation gets schema-valid and schema-invalid requests; every answer must be no 5xx, a
documented status with a documented media type, headers and body, and invalid input must never
be accepted. The renderer is fuzzed statefully too, following the document's links from a submit
to the job's routes. Real servers: the renderer API on a real Redis with a worker (on the fake
renderer), asking the LLM service for canvases; the LLM service on the scripted backend. Example
counts are small and the seed fixed, so a run is short and the same every time.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.stateful import run_state_machine_as_test
from llm.fakes import FakeBackend
from omost_llm.config import Settings as LlmSettings
from omost_llm.main import create_app as create_llm_app
from omost_renderer.api import create_app as create_renderer_app
from omost_renderer.storage.stores import FileResultStore
from omost_renderer.worker.runner import Worker
from redis import Redis
from renderer.service.fake_renderer import FakeRenderer
from renderer.service.service_support import RedisServer, WorkerThread, make_settings
from renderer.service.threaded_server import serve
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import LLM_MODEL
from .test_openapi import llm_document, renderer_document

pytestmark = [pytest.mark.redis, pytest.mark.slow]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
EXAMPLES = 8
SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
TIMEOUT_S = 30.0


def _takes_invalid_input(operation: dict[str, Any]) -> bool:
    """Whether schema-invalid input exists: a body, or a parameter narrower than any string."""
    if "requestBody" in operation:
        return True
    for parameter in operation.get("parameters", []):
        schema = {k: v for k, v in parameter["schema"].items() if k != "title"}
        if schema not in ({"type": "string"}, {"anyOf": [{"type": "string"}, {"type": "null"}]}):
            return True
    return False


def _cases(document: dict[str, Any]) -> list[tuple[str, GenerationMode]]:
    """Every operation with valid input, and with invalid input where there is any."""
    cases = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            label = f"{method.upper()} {path}"
            cases.append((label, GenerationMode.POSITIVE))
            if _takes_invalid_input(operation):
                cases.append((label, GenerationMode.NEGATIVE))
    return cases


def _ids(case: tuple[str, GenerationMode]) -> str:
    return f"{case[0]} {case[1].value}"


@pytest.fixture(scope="module")
def llm_url() -> Iterator[str]:
    settings_ = LlmSettings(model=LLM_MODEL, warmup=False)  # type: ignore[call-arg]
    with serve(create_llm_app(settings_, FakeBackend())) as url:
        yield url


@pytest.fixture(scope="module")
def renderer_url(tmp_path_factory: pytest.TempPathFactory, llm_url: str) -> Iterator[str]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    redis_server = RedisServer(tmp_path_factory.mktemp("redis"))
    redis_server.start()
    results = Path(tmp_path_factory.mktemp("results"))
    settings_ = make_settings(
        redis_server.url, results, llm_url=llm_url, images_timeout_s=20.0, images_steps=2
    )
    # No webhook secret and no allowed hosts: every generated webhook is refused at submit, before
    # any DNS lookup, so the fuzzed server never sends anything anywhere.
    assert settings_.webhook_secret is None
    assert settings_.webhook_allowed_hosts == ""
    client = Redis.from_url(settings_.redis_url, decode_responses=True, socket_timeout=5)
    worker = Worker(settings_, FakeRenderer(), client, FileResultStore(results), name="fuzz")  # type: ignore[arg-type]
    thread = WorkerThread(worker).start()
    try:
        with serve(create_renderer_app(settings_)) as url:
            yield url
    finally:
        thread.stop()
        client.close()
        redis_server.kill()


def _schema(url: str) -> Any:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    schema.config.update(base_url=url)
    checks = schema.config.checks
    # Rules across fields (exactly one of `canvas` and `code`, the render budget) are not in the
    # JSON schema, so a schema-valid request may rightly answer 400.
    checks.positive_data_acceptance.enabled = False
    # An invalid body too large to read is refused with 413, before it is parsed.
    checks.negative_data_rejection.expected_statuses = [
        *checks.negative_data_rejection.expected_statuses,
        "413",
    ]
    return schema


@pytest.fixture(scope="module")
def renderer_schema(renderer_url: str) -> Any:
    return _schema(renderer_url)


@pytest.fixture(scope="module")
def llm_schema(llm_url: str) -> Any:
    return _schema(llm_url)


def _operation(schema: Any, label: str) -> Any:
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.label == label:
            return operation
    raise AssertionError(f"{label} is not in the document")


def _fuzz(schema: Any, label: str, mode: GenerationMode) -> None:
    operation = _operation(schema, label)
    with requests.Session() as session:

        @SETTINGS
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(session=session, checks=CHECKS, timeout=TIMEOUT_S)

        run()


@pytest.mark.parametrize("case", _cases(renderer_document(Path("results"))), ids=_ids)
def test_renderer_api_answers_every_request_as_documented(
    renderer_schema: Any, case: tuple[str, GenerationMode]
) -> None:
    _fuzz(renderer_schema, *case)


@pytest.mark.parametrize("case", _cases(llm_document()), ids=_ids)
def test_llm_service_answers_every_request_as_documented(
    llm_schema: Any, case: tuple[str, GenerationMode]
) -> None:
    _fuzz(llm_schema, *case)


def test_renderer_api_follows_its_links_statefully(renderer_schema: Any) -> None:
    machine = renderer_schema.as_state_machine()
    run_state_machine_as_test(
        machine, settings=settings(SETTINGS, max_examples=EXAMPLES, stateful_step_count=4)
    )
