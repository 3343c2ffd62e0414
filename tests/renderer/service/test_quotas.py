"""Per-key quotas in Redis: requests a minute, jobs at once, the daily budget; 429s and headers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fake_renderer import canvas_json
from fastapi.testclient import TestClient
from omost_renderer.api import create_app
from omost_renderer.job_queue import constants
from service_support import make_settings

pytestmark = pytest.mark.redis

ALICE = "alice-key-0123456789"
BOB = "bob-key-0123456789ab"
KEYS = f"alice={ALICE},bob={BOB}"


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def body(side: int = 64, steps: int = 2) -> dict[str, object]:
    return {"canvas": canvas_json("a cat"), "width": side, "height": side, "steps": steps}


@pytest.fixture
def clients(redis_url: str, tmp_path: Path) -> Iterator[Any]:
    """Start API replicas on one Redis: ``clients(n, **settings) -> [TestClient, ...]``."""
    with ExitStack() as stack:

        def start(count: int = 1, **overrides: object) -> list[TestClient]:
            settings = make_settings(redis_url, tmp_path / "r", api_keys=KEYS, **overrides)
            return [stack.enter_context(TestClient(create_app(settings))) for _ in range(count)]

        yield start


def test_requests_a_minute_are_shared_by_replicas_and_answer_429(clients: Any) -> None:
    first, second = clients(2, requests_per_minute=3)
    answers = [client.get("/v1/renders/x", headers=auth(ALICE)) for client in (first, second)]
    answers.append(first.get("/v1/renders/x", headers=auth(ALICE)))
    assert [a.status_code for a in answers] == [404, 404, 404]
    assert [a.headers["x-ratelimit-remaining-requests"] for a in answers] == ["2", "1", "0"]
    assert answers[0].headers["x-ratelimit-limit-requests"] == "3"
    over = second.get("/v1/renders/x", headers=auth(ALICE))
    assert over.status_code == 429
    assert over.json()["error"]["type"] == "rate_limit_error"
    assert over.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(over.headers["retry-after"]) <= 60
    assert over.headers["x-ratelimit-remaining-requests"] == "0"
    assert over.headers["x-ratelimit-reset-requests"].endswith("s")
    # Another key has its own count.
    assert first.get("/v1/renders/x", headers=auth(BOB)).status_code == 404
    metrics = first.get("/metrics").text
    assert 'omost_render_key_requests_total{key="alice"} 3.0' in metrics
    assert 'omost_render_key_refused_total{key="alice",limit="requests"} 1.0' in metrics
    assert ALICE not in metrics


def queued_jobs(redis_client: Any) -> int:
    """Jobs queued: in the stream, or waiting in their key's backlog (fair scheduling)."""
    backlogged = redis_client.get(constants.backlogged_key(constants.STREAM_KEY))
    return int(redis_client.xlen(constants.STREAM_KEY)) + int(backlogged or 0)


def test_jobs_at_once_refuse_the_next_job_without_queueing_it(
    clients: Any, redis_client: Any
) -> None:
    (client,) = clients(jobs_per_key=2, key_limits={"bob": {"jobs": 0}})
    ids = [client.post("/v1/renders", json=body(), headers=auth(ALICE)).json()["id"] for _ in "ab"]
    refused = client.post("/v1/renders", json=body(), headers=auth(ALICE))
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "7"
    assert refused.headers["x-ratelimit-limit-jobs"] == "2"
    assert refused.headers["x-ratelimit-remaining-jobs"] == "0"
    assert queued_jobs(redis_client) == 2
    # A key with no jobs limit (its override) is not held back.
    for _ in range(3):
        assert client.post("/v1/renders", json=body(), headers=auth(BOB)).status_code == 202
    # A job that ends frees its place.
    assert client.post(f"/v1/renders/{ids[0]}/cancel", headers=auth(ALICE)).status_code == 200
    again = client.post("/v1/renders", json=body(), headers=auth(ALICE))
    assert again.status_code == 202
    assert again.headers["x-ratelimit-remaining-jobs"] == "0"


def test_the_daily_budget_counts_megapixel_steps(clients: Any, redis_client: Any) -> None:
    # 512 x 512 x 4 steps is 1.05 megapixel-steps: two fit in 3, a third does not.
    (client,) = clients(jobs_per_key=0, key_limits={"alice": {"daily_megapixel_steps": 3}})
    first = client.post("/v1/renders", json=body(512, 4), headers=auth(ALICE))
    assert first.status_code == 202
    assert first.headers["x-ratelimit-limit-megapixel-steps"] == "3"
    assert first.headers["x-ratelimit-remaining-megapixel-steps"] == "1"
    assert first.headers["x-ratelimit-reset-megapixel-steps"].endswith("s")
    assert client.post("/v1/renders", json=body(512, 4), headers=auth(ALICE)).status_code == 202
    refused = client.post("/v1/renders", json=body(512, 4), headers=auth(ALICE))
    assert refused.status_code == 429
    assert "megapixel-steps" in refused.json()["error"]["message"]
    assert int(refused.headers["retry-after"]) <= 24 * 3600
    assert queued_jobs(redis_client) == 2
    # A smaller job still fits in what is left; the default budget of another key is untouched.
    assert client.post("/v1/renders", json=body(64, 2), headers=auth(ALICE)).status_code == 202
    assert client.post("/v1/renders", json=body(512, 4), headers=auth(BOB)).status_code == 202
    metrics = client.get("/metrics").text
    assert 'omost_render_key_megapixel_steps_total{key="alice"} 2.105344' in metrics
    assert 'omost_render_key_refused_total{key="alice",limit="budget"} 1.0' in metrics


def test_a_job_not_queued_after_all_is_not_counted(clients: Any, redis_client: Any) -> None:
    (client,) = clients(max_backlog=1, jobs_per_key=2)
    headers = {**auth(ALICE), "idempotency-key": "once"}
    first = client.post("/v1/renders", json=body(), headers=headers)
    replay = client.post("/v1/renders", json=body(), headers=headers)
    assert replay.json()["id"] == first.json()["id"]
    # The replay answered with the first job: its own admission was given back.
    assert redis_client.zcard(constants.quota_jobs_key("alice")) == 1
    assert "x-ratelimit-remaining-jobs" not in replay.headers
    # The queue is full: 503, and the admission is given back.
    full = client.post("/v1/renders", json=body(), headers=auth(BOB))
    assert full.status_code == 503
    assert redis_client.zcard(constants.quota_jobs_key("bob")) == 0
