"""Webhooks end to end: a real local receiver, a real Redis, the API's dispatcher and a worker."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_renderer import canvas_json
from fastapi.testclient import TestClient
from omost_renderer.api import create_app
from omost_renderer.config import Settings
from omost_renderer.job_queue import constants
from omost_renderer.webhooks.dispatch import WebhookDispatcher, ensure_webhook_group
from pytest_httpserver import HTTPServer
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from service_support import WorkerThread, free_port, make_settings, wait_for
from werkzeug import Request, Response

pytestmark = pytest.mark.redis

KEY = b"a test signing key of 32 bytes!!"
SECRET = "whsec_" + base64.b64encode(KEY).decode()


def verify(request: Request, key: bytes = KEY) -> dict[str, Any]:
    """Check a delivery's Standard Webhooks signature independently; return its payload."""
    message_id = request.headers["webhook-id"]
    timestamp = request.headers["webhook-timestamp"]
    body = request.get_data()
    expected = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256)
    signatures = request.headers["webhook-signature"].split(" ")
    assert f"v1,{base64.b64encode(expected.digest()).decode()}" in signatures
    payload: dict[str, Any] = json.loads(body)
    return payload


class Receiver:
    """Deliveries a pytest-httpserver saw, after checking their signatures."""

    def __init__(self, server: HTTPServer, fail: dict[str, int] | None = None) -> None:
        self.lock = threading.Lock()
        #: (webhook-id, payload, status answered)
        self.deliveries: list[tuple[str, dict[str, Any], int]] = []
        self.fail = dict(fail or {})  # event type -> how many of its deliveries answer 500
        server.expect_request("/hook", method="POST").respond_with_handler(self.handle)
        self.url = server.url_for("/hook")

    def handle(self, request: Request) -> Response:
        payload = verify(request)
        with self.lock:
            status = 200
            if self.fail.get(payload["type"], 0) > 0:
                self.fail[payload["type"]] -= 1
                status = 500
            self.deliveries.append((request.headers["webhook-id"], payload, status))
        return Response("ok" if status == 200 else "try again", status=status)

    def types(self) -> list[str]:
        with self.lock:
            return [payload["type"] for _, payload, _ in self.deliveries]

    def accepted(self, event_type: str) -> list[dict[str, Any]]:
        with self.lock:
            return [
                p for _, p, status in self.deliveries if p["type"] == event_type and status == 200
            ]


def render_body(url: str, events: list[str] | None = None, **params: object) -> dict[str, Any]:
    webhook: dict[str, Any] = {"url": url}
    if events is not None:
        webhook["events"] = events
    return {"canvas": canvas_json(), "width": 64, "height": 64, "steps": 4, "webhook": webhook}


@pytest.fixture
def hook_settings(redis_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        redis_url,
        tmp_path / "results",
        webhook_secret=SECRET,
        webhook_allowed_hosts="127.0.0.1/32, localhost",
        webhook_retry_base_s=0.05,
        webhook_progress_every=2,
        webhook_timeout_s=5.0,
    )


@pytest.fixture
def client(hook_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(hook_settings)) as test_client:
        yield test_client


def delivered_all(redis: Redis) -> bool:
    """Nothing waits in the webhook stream or its retry set."""
    pending = redis.xpending(constants.WEBHOOK_STREAM_KEY, constants.WEBHOOK_GROUP_NAME)
    return (
        redis.xlen(constants.WEBHOOK_STREAM_KEY) == 0
        and redis.zcard(constants.WEBHOOK_RETRY_KEY) == 0
        and int(pending["pending"]) == 0
    )


def test_signed_events_are_delivered_once_each_with_retries(
    client: TestClient,
    httpserver: HTTPServer,
    hook_settings: Settings,
    redis_client: Redis,
    start_worker: Callable[..., WorkerThread],
) -> None:
    receiver = Receiver(httpserver, fail={"render.completed": 2})
    events = ["started", "progress", "completed", "failed", "canceled"]
    response = client.post("/v1/renders", json=render_body(receiver.url, events))
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    start_worker(settings_=hook_settings)
    wait_for(lambda: receiver.accepted("render.completed"), what="the completed webhook")
    wait_for(lambda: delivered_all(redis_client), what="every delivery to settle")
    # `completed` was answered 500 twice: the same message (same webhook-id) came three times,
    # and was accepted once.
    tries = [
        (mid, status) for mid, p, status in receiver.deliveries if p["type"] == "render.completed"
    ]
    assert [status for _, status in tries] == [500, 500, 200]
    assert len({mid for mid, _ in tries}) == 1
    assert len(receiver.accepted("render.completed")) == 1
    assert len(receiver.accepted("render.started")) == 1
    # 4 steps, at most every 2 steps: steps 2 and 4.
    progress = receiver.accepted("render.progress")
    assert sorted(p["data"]["step"] for p in progress) == [2, 4]
    types = receiver.types()
    assert "render.failed" not in types
    assert "render.canceled" not in types
    completed = receiver.accepted("render.completed")[0]
    assert completed["data"]["id"] == job_id
    assert completed["data"]["job"]["status"] == "succeeded"
    assert completed["data"]["job"]["images"][0]["url"] == f"/v1/renders/{job_id}/images/0"
    # The finished job's record keeps no webhook (its URL may be 2 kB).
    assert not [f for f in redis_client.hkeys(constants.job_key(job_id)) if "webhook" in f]
    counters = redis_client.hgetall(constants.METRICS_KEY)
    assert counters["webhooks:retried"] == "2"
    metrics = client.get("/metrics").text
    assert 'omost_render_webhook_deliveries_total{outcome="retried"} 2.0' in metrics


def test_default_events_are_the_end_and_a_cancel_is_one(
    client: TestClient, httpserver: HTTPServer, redis_client: Redis
) -> None:
    receiver = Receiver(httpserver)
    job_id = client.post("/v1/renders", json=render_body(receiver.url)).json()["id"]
    assert client.post(f"/v1/renders/{job_id}/cancel").json()["status"] == "canceled"
    wait_for(lambda: receiver.types() == ["render.canceled"], what="the canceled webhook")
    wait_for(lambda: delivered_all(redis_client), what="every delivery to settle")
    assert receiver.types() == ["render.canceled"]
    assert receiver.accepted("render.canceled")[0]["data"]["job"]["status"] == "canceled"


def test_a_receiver_that_is_down_does_not_change_the_job(
    client: TestClient,
    hook_settings: Settings,
    redis_client: Redis,
    start_worker: Callable[..., WorkerThread],
) -> None:
    down = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    job_id = client.post("/v1/renders", json=render_body(down, ["started", "completed"])).json()[
        "id"
    ]
    start_worker(settings_=hook_settings)
    wait_for(
        lambda: client.get(f"/v1/renders/{job_id}").json()["status"] == "succeeded",
        what="the job to succeed",
    )
    wait_for(
        lambda: int(redis_client.hget(constants.METRICS_KEY, "webhooks:retried") or 0) >= 2,
        what="deliveries to be retried",
    )
    job = client.get(f"/v1/renders/{job_id}").json()
    assert job["status"] == "succeeded"
    assert job["attempts"] == 1
    assert job["error"] is None
    assert len(job["images"]) == 1


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://93.184.215.14/hook", "https"),
        ("https://name.invalid/hook", "does not resolve"),
        ("https://127.0.0.2/hook", "loopback"),
        ("https://10.1.2.3/hook", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://[::1]/hook", "loopback"),
        ("https://[::ffff:192.168.0.1]/hook", "private"),
        ("ftp://example.com/hook", "https://"),
        ("https://user:pw@example.com/hook", "credentials"),
        ("not a url", "https://"),
    ],
)
def test_disallowed_webhook_urls_answer_400_at_submit(
    client: TestClient, redis_client: Redis, url: str, why: str
) -> None:
    response = client.post("/v1/renders", json=render_body(url))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "webhook.url"
    assert why in error["message"]
    assert redis_client.xlen(constants.STREAM_KEY) == 0


def test_a_webhook_without_a_signing_secret_is_refused(redis_url: str, tmp_path: Path) -> None:
    settings = make_settings(redis_url, tmp_path, webhook_allowed_hosts="127.0.0.1")
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/renders", json=render_body("http://127.0.0.1:9/hook"))
    assert response.status_code == 400
    assert "OMOST_RENDERER_WEBHOOK_SECRET" in response.json()["error"]["message"]


def test_a_malformed_webhook_field_is_a_400(client: TestClient) -> None:
    bad = render_body("https://example.com/hook", ["finished"])
    assert client.post("/v1/renders", json=bad).status_code == 400
    bad["webhook"] = {"url": "https://example.com/hook", "secret": "x"}
    assert client.post("/v1/renders", json=bad).status_code == 400


def test_a_delivery_left_by_a_dead_process_is_taken_over(
    hook_settings: Settings, httpserver: HTTPServer, redis_client: Redis
) -> None:
    receiver = Receiver(httpserver)
    fields = {
        "job": "j1",
        "event": "completed",
        "data": json.dumps({"status": "succeeded"}),
        "url": receiver.url,
        "key": "",
        "attempt": "1",
    }

    async def scenario() -> int:
        redis = AsyncRedis.from_url(hook_settings.redis_url, decode_responses=True)
        await ensure_webhook_group(redis)
        await redis.xadd(constants.WEBHOOK_STREAM_KEY, fields)  # type: ignore[arg-type]
        # A process reads the entry, then dies before delivering it.
        await redis.xreadgroup(
            constants.WEBHOOK_GROUP_NAME, "dead", {constants.WEBHOOK_STREAM_KEY: ">"}, count=1
        )
        settings = hook_settings.model_copy(update={"webhook_reclaim_after_s": 0.001})
        async with httpx.AsyncClient() as http:
            dispatcher = WebhookDispatcher(redis, settings, http, consumer="alive")
            await asyncio.sleep(0.01)
            attempted = await dispatcher.run_once(None)
        await redis.aclose()
        return attempted

    assert asyncio.run(scenario()) == 1
    assert receiver.types() == ["render.completed"]
    assert delivered_all(redis_client)


def test_a_keyed_render_is_signed_with_its_keys_own_secret(
    redis_url: str,
    tmp_path: Path,
    httpserver: HTTPServer,
    redis_client: Redis,
    start_worker: Callable[..., WorkerThread],
) -> None:
    alice_key = b"alice's own signing key"
    settings = make_settings(
        redis_url,
        tmp_path / "results",
        api_keys="alice=alice-key-0123456789,bob=bob-key-0123456789ab",
        webhook_secret=SECRET,
        webhook_secrets="alice=whsec_" + base64.b64encode(alice_key).decode(),
        webhook_allowed_hosts="127.0.0.1",
    )
    signed_by: list[str] = []

    def handle(request: Request) -> Response:
        for name, key in (("alice", alice_key), ("service", KEY)):
            try:
                verify(request, key)
                signed_by.append(name)
            except AssertionError:
                continue
        return Response("ok")

    httpserver.expect_request("/hook", method="POST").respond_with_handler(handle)
    url = httpserver.url_for("/hook")
    start_worker(settings_=settings)
    with TestClient(create_app(settings)) as client:
        for key in ("alice-key-0123456789", "bob-key-0123456789ab"):
            submitted = client.post(
                "/v1/renders", json=render_body(url), headers={"authorization": f"Bearer {key}"}
            )
            assert submitted.status_code == 202, submitted.text
        wait_for(lambda: len(signed_by) == 2, what="both completed webhooks")
    assert sorted(signed_by) == ["alice", "service"]  # bob has no secret of his own


def test_two_api_replicas_deliver_each_event_once(
    hook_settings: Settings,
    httpserver: HTTPServer,
    redis_client: Redis,
    start_worker: Callable[..., WorkerThread],
) -> None:
    receiver = Receiver(httpserver)
    with TestClient(create_app(hook_settings)) as first, TestClient(create_app(hook_settings)):
        ids = [
            first.post("/v1/renders", json=render_body(receiver.url)).json()["id"] for _ in range(6)
        ]
        start_worker(settings_=hook_settings)
        wait_for(lambda: len(receiver.accepted("render.completed")) >= 6, what="6 completions")
        wait_for(lambda: delivered_all(redis_client), what="every delivery to settle")
    completed = [p["data"]["id"] for p in receiver.accepted("render.completed")]
    assert sorted(completed) == sorted(ids)
    consumers = redis_client.xinfo_consumers(
        constants.WEBHOOK_STREAM_KEY, constants.WEBHOOK_GROUP_NAME
    )
    assert len(consumers) == 2  # both replicas read the one group
