"""Both OpenAPI documents are valid OpenAPI 3.1 and list every status each route answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llm.fakes import FakeBackend
from omost_llm.config import Settings as LlmSettings
from omost_llm.main import create_app as create_llm_app
from omost_renderer.api import create_app as create_renderer_app
from omost_renderer.config import Settings as RendererSettings
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from .conftest import LLM_MODEL

# (method, path) -> the error statuses the route can answer, read from its code.
# Every `/v1/*` route can refuse a missing or wrong API key (401) or a per-key limit (429).
KEYED = {401, 429}
RENDERER_ROUTES: dict[tuple[str, str], set[int]] = {
    ("get", "/health"): set(),
    ("get", "/ready"): {503},
    ("get", "/metrics"): {401, 503},
    ("post", "/v1/renders"): KEYED | {400, 404, 409, 413, 422, 503},
    ("get", "/v1/renders/{job_id}"): KEYED | {404, 503},
    ("post", "/v1/renders/{job_id}/cancel"): KEYED | {404, 409, 503},
    ("get", "/v1/renders/{job_id}/images/{n}"): KEYED | {400, 404, 503},
    ("get", "/v1/renders/{job_id}/sketch"): KEYED | {404, 503},
    ("get", "/v1/renders/{job_id}/mask"): KEYED | {404, 503},
    ("get", "/v1/renders/{job_id}/events"): KEYED | {400, 404, 503},
    ("post", "/v1/images/generations"): KEYED | {400, 413, 422, 500, 502, 503, 504},
    ("get", "/v1/schema/vocabulary"): KEYED,
    ("get", "/v1/models"): KEYED,
    ("post", "/v1/canvases/validate"): KEYED | {400, 413},
}
LLM_ROUTES: dict[tuple[str, str], set[int]] = {
    ("post", "/v1/chat/completions"): KEYED | {400, 404, 413, 422, 502, 503, 504},
    ("post", "/v1/canvases"): KEYED | {400, 413, 422, 502, 503, 504},
    ("get", "/v1/models"): KEYED,
    ("get", "/health"): set(),
    ("get", "/ready"): {503},
    ("get", "/metrics"): {401},
}
# Routes whose success is not JSON, and its media type.
MEDIA: dict[tuple[str, str], str] = {
    ("get", "/metrics"): "text/plain",
    ("get", "/v1/renders/{job_id}/images/{n}"): "image/png",
    ("get", "/v1/renders/{job_id}/sketch"): "image/png",
    ("get", "/v1/renders/{job_id}/mask"): "image/png",
    ("get", "/v1/renders/{job_id}/events"): "text/event-stream",
}
ENVELOPE = "#/components/schemas/ErrorResponse"


def renderer_document(tmp_path: Path) -> dict[str, Any]:
    settings = RendererSettings(redis_url="redis://127.0.0.1:1/0", results_dir=tmp_path)
    return create_renderer_app(settings).openapi()


def llm_document() -> dict[str, Any]:
    settings = LlmSettings(model=LLM_MODEL, warmup=False)  # type: ignore[call-arg]
    return create_llm_app(settings, FakeBackend()).openapi()


@pytest.fixture(params=["renderer", "llm"])
def documented(
    request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[dict[str, Any], dict[tuple[str, str], set[int]]]:
    if request.param == "renderer":
        return renderer_document(tmp_path), RENDERER_ROUTES
    return llm_document(), LLM_ROUTES


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }


def test_the_documents_are_valid_openapi_3_1(
    documented: tuple[dict[str, Any], dict[tuple[str, str], set[int]]],
) -> None:
    document, _ = documented
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_the_validator_catches_a_tuple_schema_written_as_an_items_list(tmp_path: Path) -> None:
    # What the vocabulary's boxes used to produce; the check above would catch it coming back.
    document = renderer_document(tmp_path)
    box = {"type": "array", "items": [{"type": "integer"}] * 4}
    document["components"]["schemas"]["VocabularyResponse"]["properties"]["boxes"] = box
    with pytest.raises(OpenAPIValidationError):
        validate(document)


def _schemas(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _schemas(value)
    elif isinstance(node, list):
        for value in node:
            yield from _schemas(value)


def test_no_schema_is_a_tuple(
    documented: tuple[dict[str, Any], dict[tuple[str, str], set[int]]],
) -> None:
    # Tools that predate 3.1 read `prefixItems` as a list-valued `items`, an invalid schema;
    # fixed-length arrays (the vocabulary's colours and boxes) are plain arrays.
    document, _ = documented
    for node in _schemas(document):
        assert "prefixItems" not in node
        assert not isinstance(node.get("items"), list)
    vocabulary = document["components"]["schemas"].get("VocabularyResponse")
    if vocabulary is not None:
        box = vocabulary["properties"]["boxes"]["additionalProperties"]["additionalProperties"]
        assert box["additionalProperties"] == {
            "items": {"type": "integer"},
            "maxItems": 4,
            "minItems": 4,
            "type": "array",
        }


def test_every_route_lists_its_error_statuses_with_the_envelope(
    documented: tuple[dict[str, Any], dict[tuple[str, str], set[int]]],
) -> None:
    document, expected = documented
    found = operations(document)
    assert set(found) == set(expected)
    for route, operation in found.items():
        responses = operation["responses"]
        errors = {int(status) for status in responses if not status.startswith("2")}
        assert errors == expected[route], route
        for status in errors:
            content = responses[str(status)]["content"]
            assert content["application/json"]["schema"]["$ref"] == ENVELOPE, (route, status)
            assert responses[str(status)]["description"], (route, status)
            if status in (429, 503):
                assert "Retry-After" in responses[str(status)]["headers"], route
            if status == 401:
                assert "WWW-Authenticate" in responses[str(status)]["headers"], route


def test_every_success_documents_its_media_type(
    documented: tuple[dict[str, Any], dict[tuple[str, str], set[int]]],
) -> None:
    document, _ = documented
    for route, operation in operations(document).items():
        (success,) = [s for s in operation["responses"] if s.startswith("2")]
        content = operation["responses"][success]["content"]
        media = MEDIA.get(route, "application/json")
        assert media in content, (route, list(content))
        if media == "application/json":
            # A schema that says something: a model, not FastAPI's empty default.
            assert content[media]["schema"], route


def test_streamed_chat_is_documented_beside_the_json_answer() -> None:
    chat = llm_document()["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]
    assert set(chat["content"]) == {"application/json", "text/event-stream"}
    assert chat["content"]["application/json"]["schema"]["$ref"].endswith("/ChatCompletion")


def test_the_renderer_documents_no_422_of_its_own_validation(tmp_path: Path) -> None:
    document = renderer_document(tmp_path)
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    submit = document["paths"]["/v1/renders"]["post"]["responses"]
    # 422 on submit is the idempotency conflict, in the envelope.
    assert submit["422"]["content"]["application/json"]["schema"]["$ref"] == ENVELOPE
