"""The page's routes without a browser: the page itself, the vocabulary, validation, the proxy."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient
from omost_renderer.api import create_app
from omost_renderer.api.web import STATIC_DIR as STATIC
from omost_renderer.config import Settings
from omost_schema import AREAS, COLORS, LOCATIONS, OFFSETS, region_rect
from pytest_httpserver import HTTPServer
from web_fake_llm import BATTLE
from werkzeug import Response


def client_for(llm_url: str) -> TestClient:
    # Redis is never reached by these routes; the app starts without it.
    settings = Settings(redis_url="redis://127.0.0.1:1/0", llm_url=llm_url, llm_timeout_s=5.0)
    return TestClient(create_app(settings))


@pytest.fixture
def client(httpserver: HTTPServer) -> TestClient:
    return client_for(httpserver.url_for("/").rstrip("/"))


def test_page_and_its_modules_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/static/app.js">' in page.text
    for name in [
        "app.js",
        "api.js",
        "scanner.js",
        "sketch.js",
        "diff.js",
        "repaint.js",
        "editor.js",
        "render.js",
    ]:
        module = client.get(f"/static/{name}")
        assert module.status_code == 200, name
        assert "javascript" in module.headers["content-type"]
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/static/missing.js").status_code == 404


def test_every_file_the_page_loads_is_local(client: TestClient) -> None:
    # No CDN: nothing the page loads points to another host.
    for name in ["index.html", *[p.name for p in STATIC.iterdir()]]:
        text = client.get("/" if name == "index.html" else f"/static/{name}").text
        assert re.search(r"https?://|//cdn", text) is None, name


def test_vocabulary_is_the_schema(client: TestClient) -> None:
    vocab = client.get("/v1/schema/vocabulary").json()
    assert vocab["grid_size"] == 90
    assert vocab["locations"] == list(LOCATIONS)
    assert vocab["offsets"] == list(OFFSETS)
    assert vocab["areas"] == list(AREAS)
    assert {k: tuple(v) for k, v in vocab["colors"].items()} == dict(COLORS)
    boxes = vocab["boxes"]
    for location in LOCATIONS:
        for offset in OFFSETS:
            for area in AREAS:
                assert tuple(boxes[location][offset][area]) == region_rect(location, offset, area)
    assert 0 < vocab["sketch_color_weight"] < 1
    assert vocab["limits"]["max_local_descriptions"] > 0
    assert vocab["render_params"]["properties"]["width"]["multipleOf"] == 64


def test_validate_answers_the_canvas_and_its_code(client: TestClient) -> None:
    result = client.post("/v1/canvases/validate", json={"canvas": BATTLE.model_dump()}).json()
    assert result["valid"] is True
    assert result["canvas"] == BATTLE.model_dump()
    assert result["code"] == BATTLE.to_code()
    assert result["errors"] == []


def test_validate_names_each_bad_field_with_a_suggestion(client: TestClient) -> None:
    data = BATTLE.model_dump()
    data["local_descriptions"][1]["HTML_web_color_name"] = "darkgoldenrd"
    data["local_descriptions"][0]["distance_to_viewer"] = 0
    del data["global_description"]["tags"]
    result = client.post("/v1/canvases/validate", json={"canvas": data}).json()
    assert result["valid"] is False
    assert result["canvas"] is None
    errors = {e["path"]: e for e in result["errors"]}
    assert set(errors) == {
        "global_description.tags",
        "local_descriptions.0.distance_to_viewer",
        "local_descriptions.1.HTML_web_color_name",
    }
    color = errors["local_descriptions.1.HTML_web_color_name"]
    assert color["message"] == "'darkgoldenrd' is not a valid colour name"
    assert color["suggestion"] == "darkgoldenrod"
    assert "greater than 0" in errors["local_descriptions.0.distance_to_viewer"]["message"]


def test_validate_reads_code_with_corrections_and_locates_errors(client: TestClient) -> None:
    code = BATTLE.to_code().replace("'on the left'", "'on the lefft'")
    result = client.post("/v1/canvases/validate", json={"code": code}).json()
    assert result["valid"] is True
    assert result["canvas"] == BATTLE.model_dump()
    assert [(c["kind"], c["original"], c["corrected"]) for c in result["corrections"]] == [
        ("location", "on the lefft", "on the left")
    ]
    broken = client.post(
        "/v1/canvases/validate",
        json={"code": "canvas = Canvas()\ncanvas.set_global_description(description=1 +)\n"},
    )
    error = broken.json()["errors"][0]
    assert broken.json()["valid"] is False
    assert error["path"] == "code"
    assert error["line"] == 2


def test_validate_wants_exactly_one_of_canvas_or_code(client: TestClient) -> None:
    for body in [{}, {"canvas": BATTLE.model_dump(), "code": "x"}]:
        answer = client.post("/v1/canvases/validate", json=body)
        assert answer.status_code == 400
        assert "exactly one" in answer.json()["error"]["message"]


def test_proxy_streams_the_llm_answer_through(client: TestClient, httpserver: HTTPServer) -> None:
    events = "".join(f"data: {json.dumps({'n': n})}\n\n" for n in range(3)) + "data: [DONE]\n\n"
    httpserver.expect_request("/v1/chat/completions", method="POST").respond_with_response(
        Response(events, content_type="text/event-stream")
    )
    body = {"model": "m", "messages": [{"role": "user", "content": "a cat"}], "stream": True}
    with client.stream("POST", "/llm/v1/chat/completions", json=body) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        assert answer.read().decode() == events
    sent = httpserver.log[0][0]
    assert json.loads(sent.data) == body


def test_proxy_passes_llm_errors_on_unchanged(client: TestClient, httpserver: HTTPServer) -> None:
    envelope = {"error": {"message": "busy", "type": "server_error", "param": None, "code": "x"}}
    httpserver.expect_request("/v1/canvases", method="POST").respond_with_json(
        envelope, status=429, headers={"Retry-After": "3"}
    )
    answer = client.post("/llm/v1/canvases", json={"prompt": "a cat"})
    assert answer.status_code == 429
    assert answer.json() == envelope
    assert answer.headers["retry-after"] == "3"


def test_proxy_forwards_only_the_llm_public_routes(client: TestClient) -> None:
    assert client.get("/llm/metrics").status_code == 404
    assert client.post("/llm/v1/models").status_code == 405


def test_proxy_refuses_a_huge_body(client: TestClient) -> None:
    # The API's body limit (OMOST_RENDERER_MAX_REQUEST_BYTES) answers before the proxy reads it.
    answer = client.post("/llm/v1/canvases", content=b"x" * (4 * 1024 * 1024 + 1))
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "request_too_large"


def test_llm_down_is_a_502_envelope() -> None:
    client = client_for("http://127.0.0.1:9")
    answer = client.post("/llm/v1/chat/completions", json={"model": "m", "messages": []})
    assert answer.status_code == 502
    error = answer.json()["error"]
    assert error["code"] == "llm_unavailable"
    assert "not reachable" in error["message"]
