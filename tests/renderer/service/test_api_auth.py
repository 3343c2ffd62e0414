"""API keys of the renderer: 401s, open routes, jobs visible only to their key, the LLM's key."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import openai
import pytest
from fake_renderer import canvas_json
from fastapi.testclient import TestClient
from omost_renderer.api import create_app
from omost_renderer.config import Settings
from service_support import WorkerThread, make_settings
from threaded_server import serve_handler

pytestmark = pytest.mark.redis

ALICE = "alice-key-0123456789"
ALICE_NEW = "alice-key-rotated-0123"
BOB = "bob-key-0123456789ab"
KEYS = f"alice={ALICE},alice={ALICE_NEW},bob={BOB}"
LLM_KEY = "renderer-own-llm-key-0123"


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def body(**params: object) -> dict[str, object]:
    return {"canvas": canvas_json("a cat"), "width": 64, "height": 64, "steps": 2, **params}


@pytest.fixture
def keyed(redis_url: str, tmp_path: Path) -> Settings:
    return make_settings(redis_url, tmp_path / "results", api_keys=KEYS)


@pytest.fixture
def client(keyed: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(keyed)) as test_client:
        yield test_client


@pytest.mark.parametrize("headers", [{}, auth("wrong-key-0123456789"), {"authorization": ALICE}])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/renders"),
        ("GET", "/v1/renders/abc"),
        ("GET", "/v1/schema/vocabulary"),
        ("POST", "/v1/images/generations"),
        ("POST", "/llm/v1/chat/completions"),
        ("GET", "/llm/v1/models"),
    ],
)
def test_a_missing_or_wrong_key_answers_401_with_www_authenticate(
    client: TestClient, method: str, path: str, headers: dict[str, str]
) -> None:
    response = client.request(method, path, headers=headers, json=body())
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] in ("missing_api_key", "invalid_api_key")


def test_health_ready_metrics_and_the_page_stay_open(client: TestClient) -> None:
    for path in ("/health", "/ready", "/metrics", "/", "/static/api.js"):
        assert client.get(path).status_code == 200, path


def test_metrics_can_have_their_own_key(redis_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        redis_url, tmp_path / "r", api_keys=KEYS, metrics_api_key="metrics-key-0123456789"
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers=auth(ALICE)).status_code == 401
        assert client.get("/metrics", headers=auth("metrics-key-0123456789")).status_code == 200


def test_a_job_is_visible_only_to_the_key_that_made_it(
    client: TestClient,
    keyed: Settings,
    redis_client: object,
    start_worker: Callable[..., WorkerThread],
) -> None:
    made = client.post("/v1/renders", json=body(), headers=auth(ALICE))
    assert made.status_code == 202
    job_id = made.json()["id"]
    # Another key is told exactly what it is told of a job that never existed.
    missing = client.get("/v1/renders/nosuchjob", headers=auth(BOB)).json()
    paths = [
        ("GET", f"/v1/renders/{job_id}"),
        ("GET", f"/v1/renders/{job_id}/events"),
        ("GET", f"/v1/renders/{job_id}/sketch"),
        ("GET", f"/v1/renders/{job_id}/images/0"),
        ("POST", f"/v1/renders/{job_id}/cancel"),
    ]
    for method, path in paths:
        response = client.request(method, path, headers=auth(BOB))
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == missing["error"]["code"] == "not_found"
    # The sketch of a live job and its status are the owner's; the rotated key is the same owner.
    assert client.get(f"/v1/renders/{job_id}/sketch", headers=auth(ALICE)).status_code == 200
    assert client.get(f"/v1/renders/{job_id}", headers=auth(ALICE_NEW)).status_code == 200
    start_worker(settings_=keyed)
    with client.stream("GET", f"/v1/renders/{job_id}/events", headers=auth(ALICE)) as events:
        assert events.status_code == 200
        assert any('"succeeded"' in line for line in events.iter_lines())
    image = client.get(f"/v1/renders/{job_id}/images/0", headers=auth(ALICE))
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert client.get(f"/v1/renders/{job_id}/images/0", headers=auth(BOB)).status_code == 404


def test_the_job_record_names_its_key_never_the_key(
    client: TestClient, redis_client: object
) -> None:
    job_id = client.post("/v1/renders", json=body(), headers=auth(ALICE)).json()["id"]
    fields = redis_client.hgetall(f"omost:render:job:{job_id}")  # type: ignore[attr-defined]
    assert fields["key_name"] == "alice"
    assert not [value for value in fields.values() if ALICE in value]


def test_idempotency_keys_are_per_api_key(client: TestClient) -> None:
    headers = {"idempotency-key": "same"}
    first = client.post("/v1/renders", json=body(), headers={**headers, **auth(ALICE)})
    again = client.post("/v1/renders", json=body(), headers={**headers, **auth(ALICE_NEW)})
    other = client.post("/v1/renders", json=body(), headers={**headers, **auth(BOB)})
    assert first.json()["id"] == again.json()["id"]
    assert other.status_code == 202
    assert other.json()["id"] != first.json()["id"]


def test_without_keys_the_api_is_open(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        made = client.post("/v1/renders", json=body())
        assert made.status_code == 202
        assert client.get(f"/v1/renders/{made.json()['id']}").status_code == 200


class RecordingLLM:
    """An LLM service that answers a canvas and records each request's Authorization."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []
        self.url = ""


@contextmanager
def recording_llm() -> Iterator[RecordingLLM]:
    llm = RecordingLLM()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            self.rfile.read(length)
            llm.seen.append(self.headers.get("Authorization"))
            payload = json.dumps({"canvas": canvas_json("a cat"), "data": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serve_handler(Handler) as url:
        llm.url = url
        yield llm


def test_the_renderer_sends_its_own_llm_key_never_the_callers(
    redis_url: str, tmp_path: Path, start_worker: Callable[..., WorkerThread]
) -> None:
    with recording_llm() as llm:
        settings = make_settings(
            redis_url, tmp_path / "r", api_keys=KEYS, llm_url=llm.url, llm_api_key=LLM_KEY
        )
        with TestClient(create_app(settings)) as client:
            assert client.get("/llm/v1/models", headers=auth(ALICE)).status_code == 200
            start_worker(settings_=settings)
            # The openai SDK's api_key is the Bearer key; a wrong one is its AuthenticationError.
            base = f"{client.base_url}/v1"
            wrong = openai.OpenAI(
                base_url=base, api_key="wrong-key-0123456789", http_client=client, max_retries=0
            )
            with pytest.raises(openai.AuthenticationError):
                wrong.images.generate(prompt="a cat", size="256x256")
            sdk = openai.OpenAI(base_url=base, api_key=BOB, http_client=client, max_retries=0)
            images = sdk.images.generate(prompt="a cat", size="256x256")
            assert images.data is not None
            url = images.data[0].url or ""
            job_id = url.split("/v1/renders/")[1].split("/")[0]
            # The Images API's render is the caller's job.
            assert client.get(f"/v1/renders/{job_id}", headers=auth(BOB)).status_code == 200
            assert client.get(f"/v1/renders/{job_id}", headers=auth(ALICE)).status_code == 404
    assert llm.seen == [f"Bearer {LLM_KEY}"] * 2
