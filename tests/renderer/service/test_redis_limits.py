"""Redis at its limits, against real processes: full (``maxmemory``, ``noeviction``), and one
idempotency key submitted by many clients at once. Rows of the fault matrix in operations.md."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fake_renderer import canvas_json
from faulty_renderer import HeldRenderer
from live_server import serve_api
from omost_renderer.job_queue import constants
from omost_renderer.job_queue.jobs import JobRequest
from redis import Redis
from service_support import RedisServer, WorkerThread, make_settings, wait_for

pytestmark = pytest.mark.redis

# Room above an empty Redis: a few hundred jobs of the requests below.
_HEADROOM_BYTES = 600_000


def body(seed: int) -> dict[str, object]:
    return {
        "canvas": canvas_json(),
        "width": 64,
        "height": 64,
        "steps": 4,
        "seed": seed,
        "negative_prompt": "blurry, " * 100,
    }


@pytest.fixture
def small_redis(tmp_path: Path) -> Iterator[tuple[RedisServer, Redis]]:
    """A redis-server of its own, to be given a small ``maxmemory`` under ``noeviction``."""
    server = RedisServer(tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    server.start()
    client = Redis.from_url(server.url, decode_responses=True)
    client.config_set("maxmemory-policy", "noeviction")
    yield server, client
    client.close()
    server.kill()


def limit_memory(client: Redis, headroom: int) -> None:
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", str(used + headroom))


def test_full_redis_answers_503_with_retry_after_and_keeps_every_accepted_job(
    small_redis: tuple[RedisServer, Redis], tmp_path: Path
) -> None:
    server, redis = small_redis
    settings = make_settings(server.url, tmp_path / "results", max_backlog=100_000)
    with serve_api(settings) as url:
        limit_memory(redis, _HEADROOM_BYTES)

        local = threading.local()
        clients: list[httpx.Client] = []

        def submit(seed: int) -> tuple[int, int, dict[str, object], dict[str, str]]:
            # One kept-alive connection per thread: a refusal must not drop it.
            if not hasattr(local, "http"):
                local.http = httpx.Client(base_url=url, timeout=30)
                clients.append(local.http)
            answer = local.http.post("/v1/renders", json=body(seed))
            return seed, answer.status_code, answer.json(), dict(answer.headers)

        try:
            with ThreadPoolExecutor(max_workers=4) as pool:
                answers = list(pool.map(submit, range(300)))
        finally:
            for http in clients:
                http.close()
        statuses = [status for _, status, _, _ in answers]
        assert set(statuses) == {202, 503}, sorted(set(statuses))
        refused = [(view, headers) for _, status, view, headers in answers if status == 503]
        assert {view["error"]["code"] for view, _ in refused} == {"store_full"}  # type: ignore[index]
        assert all(headers["retry-after"] == "7" for _, headers in refused)
        accepted = {seed: view["id"] for seed, status, view, _ in answers if status == 202}
        assert len(accepted) > 20
        assert len(refused) > 20
        # Reads still work on a full Redis: every accepted job is there, whole.
        with httpx.Client(base_url=url, timeout=30) as http:
            for seed, job_id in accepted.items():
                view = http.get(f"/v1/renders/{job_id}")
                assert view.status_code == 200
                assert view.json()["status"] == "queued"
                request = JobRequest.model_validate_json(
                    redis.hget(constants.job_key(str(job_id)), "request") or ""
                )
                assert request.params.seed == seed
        assert redis.xlen(constants.STREAM_KEY) == len(accepted)
        # Once there is room again, submits are accepted again.
        redis.config_set("maxmemory", "0")
        with httpx.Client(base_url=url, timeout=30) as http:
            assert http.post("/v1/renders", json=body(10_000)).status_code == 202


def test_full_redis_during_a_render_loses_no_job_and_keeps_the_worker(
    small_redis: tuple[RedisServer, Redis],
    tmp_path: Path,
    start_worker: Callable[..., WorkerThread],
) -> None:
    server, redis = small_redis
    settings = make_settings(server.url, tmp_path / "results")
    renderer = HeldRenderer(hold_at=2)
    worker = start_worker(renderer, settings)
    with serve_api(settings) as url, httpx.Client(base_url=url, timeout=30) as http:
        job_id = http.post("/v1/renders", json={**body(1), "steps": 6}).json()["id"]
        assert renderer.holding.wait(60)
        redis.config_set("maxmemory", "1")  # full: every write that may grow memory is refused
        renderer.release.set()
        wait_for(renderer.refused.is_set, what="the worker to meet the full Redis")
        assert http.get(f"/v1/renders/{job_id}").status_code == 200
        refused = http.post("/v1/renders", json=body(2))
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "store_full"
        redis.config_set("maxmemory", "0")
        wait_for(
            lambda: http.get(f"/v1/renders/{job_id}").json()["status"] in ("succeeded", "failed"),
            what="the job to end once Redis has room",
        )
        done = http.get(f"/v1/renders/{job_id}").json()
        assert done["status"] == "succeeded"
        assert len(done["images"]) == 1
        assert worker.thread.is_alive()
        later = http.post("/v1/renders", json=body(3)).json()["id"]
        wait_for(lambda: http.get(f"/v1/renders/{later}").json()["status"] == "succeeded")
    results = list((tmp_path / "results").rglob(f"{job_id}/**/*.png"))
    assert len(results) == 1, results


def test_one_idempotency_key_from_100_concurrent_clients_makes_one_job(
    redis_url: str, tmp_path: Path, redis_client: Redis
) -> None:
    settings = make_settings(redis_url, tmp_path / "results")
    limits = httpx.Limits(max_connections=100)
    with serve_api(settings) as url, httpx.Client(base_url=url, timeout=60, limits=limits) as http:

        def submit(_: int) -> tuple[int, str]:
            answer = http.post(
                "/v1/renders", json=body(5), headers={"Idempotency-Key": "order-100"}
            )
            return answer.status_code, str(answer.json()["id"])

        with ThreadPoolExecutor(max_workers=100) as pool:
            answers = list(pool.map(submit, range(100)))
    assert {status for status, _ in answers} == {202}
    assert len({job_id for _, job_id in answers}) == 1
    assert redis_client.xlen(constants.STREAM_KEY) == 1
    stored = redis_client.get(constants.idempotency_key("order-100")) or ""
    assert stored.split()[0] == answers[0][1]
    assert json.loads(redis_client.hget(constants.job_key(answers[0][1]), "request") or "{}")
