"""What a job keeps in Redis: transient previews, a small final record, O(log n) positions."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from fake_renderer import canvas_json
from fastapi.testclient import TestClient
from faulty_renderer import HeldRenderer
from omost_renderer.api import create_app
from omost_renderer.config import Settings
from omost_renderer.job_queue import constants
from omost_renderer.job_queue.worker_queue import WorkerQueue, ensure_group
from redis import Redis
from service_support import WorkerThread, make_settings, wait_for

pytestmark = pytest.mark.redis


def body(**params: object) -> dict[str, object]:
    return {"canvas": canvas_json(), "width": 64, "height": 64, "steps": 6, **params}


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_previews_are_transient_and_never_kept_with_the_job(
    client: TestClient, start_worker: Callable[..., WorkerThread], redis_client: Redis
) -> None:
    renderer = HeldRenderer(hold_at=4)
    start_worker(renderer)
    job_id = client.post("/v1/renders", json=body()).json()["id"]
    assert renderer.holding.wait(60)
    previews = redis_client.xrange(constants.previews_key(job_id))
    assert len(previews) == constants.PREVIEWS_MAXLEN
    latest = json.loads(previews[-1][1]["data"])
    assert latest["step"] == 4
    assert latest["preview"].startswith("data:image/jpeg;base64,")
    assert 0 < redis_client.ttl(constants.previews_key(job_id)) <= constants.PREVIEW_TTL_S
    kept = redis_client.xrange(constants.events_key(job_id))
    assert [json.loads(f["data"]).get("step") for _, f in kept if f["type"] == "progress"] == [
        1,
        2,
        3,
        4,
    ]
    assert not any("preview" in fields["data"] for _, fields in kept)
    renderer.release.set()
    wait_for(lambda: client.get(f"/v1/renders/{job_id}").json()["status"] == "succeeded")
    # The finished job keeps its summary and final event; the preview only expires.
    assert redis_client.hget(constants.job_key(job_id), "request") is None
    assert redis_client.ttl(constants.previews_key(job_id)) <= constants.PREVIEW_TTL_S


def test_a_new_event_stream_starts_with_the_latest_preview(
    client: TestClient, start_worker: Callable[..., WorkerThread], settings: Settings
) -> None:
    import anyio
    from omost_renderer.job_queue.api_queue import JobQueue
    from redis.asyncio import Redis as AsyncRedis

    renderer = HeldRenderer(hold_at=4)
    start_worker(renderer)
    job_id = client.post("/v1/renders", json=body()).json()["id"]
    assert renderer.holding.wait(60)

    async def read() -> list[tuple[bool, dict[str, object]]]:
        redis = AsyncRedis.from_url(settings.redis_url, decode_responses=True)
        try:
            events, _ = await JobQueue(redis, settings).events(
                job_id, "0-0", None, previews_after="0-0"
            )
        finally:
            await redis.aclose()
        return [(event.transient, json.loads(event.data)) for event in events]

    events = anyio.run(read)
    renderer.release.set()
    transient = [data for is_preview, data in events if is_preview]
    assert [data["step"] for data in transient] == [4]
    assert all("preview" not in data for is_preview, data in events if not is_preview)


def test_a_final_job_keeps_a_small_record(
    client: TestClient, start_worker: Callable[..., WorkerThread], redis_client: Redis
) -> None:
    start_worker()
    job_id = client.post("/v1/renders", json=body(steps=40)).json()["id"]
    wait_for(lambda: client.get(f"/v1/renders/{job_id}").json()["status"] == "succeeded")
    record = redis_client.hgetall(constants.job_key(job_id))
    assert "request" not in record
    assert json.loads(record["final_event"])["status"] == "succeeded"
    assert record["final_event_id"] == redis_client.xrevrange(constants.events_key(job_id))[0][0]
    used = redis_client.memory_usage(constants.job_key(job_id)) or 0
    # id, status, times, images, final event: never the request. About 2 kB; Redis's hash
    # table encoding and allocator size classes make the exact figure vary by a few hundred.
    assert used < 4096, used
    # The event stream (4 kB or more, whatever it holds) outlives the job by a minute only.
    assert 0 < redis_client.ttl(constants.events_key(job_id)) <= constants.EVENTS_LINGER_S
    assert redis_client.ttl(constants.job_key(job_id)) > constants.EVENTS_LINGER_S
    sketch = client.get(f"/v1/renders/{job_id}/sketch")
    assert sketch.status_code == 404
    assert sketch.json()["error"]["code"] == "not_found"


def test_submit_and_cancel_in_a_loop_keeps_memory_bounded(
    redis_url: str, tmp_path: object, redis_client: Redis
) -> None:
    settings = make_settings(redis_url, tmp_path / "r", canceled_ttl_s=120)  # type: ignore[operator]
    big = body()
    big["negative_prompt"] = "x" * 1000  # the longest accepted: each request is over 2 kB
    with TestClient(create_app(settings)) as client:
        ids = []
        for _ in range(100):
            job = client.post("/v1/renders", json=big).json()
            assert client.post(f"/v1/renders/{job['id']}/cancel").json()["status"] == "canceled"
            ids.append(job["id"])
        assert redis_client.xlen(constants.STREAM_KEY) == 0
        assert redis_client.zcard(constants.CANCELED_KEY) == 0
        for job_id in ids:
            key = constants.job_key(job_id)
            assert redis_client.hget(key, "request") is None
            # What stays for `canceled_ttl_s` is a fixed 2 kB at most, whatever the request
            # (here over 2 kB); the event stream goes after a minute.
            assert (redis_client.memory_usage(key) or 0) < 2048
            assert 0 < redis_client.ttl(key) <= 120
            assert 0 < redis_client.ttl(constants.events_key(job_id)) <= constants.EVENTS_LINGER_S


def positions(client: TestClient, ids: list[str]) -> list[int | None]:
    return [client.get(f"/v1/renders/{job_id}").json()["queue_position"] for job_id in ids]


def test_queue_position_counts_only_live_entries_ahead(
    client: TestClient, settings: Settings, redis_client: Redis
) -> None:
    ids = [client.post("/v1/renders", json=body()).json()["id"] for _ in range(6)]
    assert positions(client, ids) == [0, 1, 2, 3, 4, 5]
    client.post(f"/v1/renders/{ids[2]}/cancel")
    client.post(f"/v1/renders/{ids[4]}/cancel")
    assert positions(client, ids) == [0, 1, None, 2, None, 3]
    # A worker takes the first job: the others move up; then it hands it back to the end.
    ensure_group(redis_client)
    worker = WorkerQueue(redis_client, settings, "w")
    claim = worker.read_new(100)
    assert claim is not None
    assert claim.job_id == ids[0]
    started = worker.start(claim)
    assert started is not None
    assert positions(client, ids) == [None, 0, None, 1, None, 2]
    client.post(f"/v1/renders/{ids[1]}/cancel")  # the next one leaves: the frontier moves on
    assert positions(client, ids) == [None, None, None, 0, None, 1]
    assert worker.requeue(started, refund=True, error_code="", message="")
    assert positions(client, ids) == [2, None, None, 0, None, 1]


def test_queue_position_reads_no_range_of_the_backlog(
    client: TestClient, redis_client: Redis
) -> None:
    ids = [client.post("/v1/renders", json=body()).json()["id"] for _ in range(50)]
    redis_client.config_resetstat()
    assert positions(client, [ids[-1]]) == [49]
    commands = redis_client.info("commandstats")
    assert "cmdstat_xrange" in commands  # the one-entry look at the frontier, inside the script
    assert commands["cmdstat_xrange"]["calls"] == 1
    assert "cmdstat_hgetall" in commands


def test_metrics_count_workers_without_scanning_the_keyspace(
    client: TestClient, start_worker: Callable[..., WorkerThread], redis_client: Redis
) -> None:
    first = start_worker(name="metrics-a")
    start_worker(name="metrics-b")
    wait_for(lambda: "omost_render_workers 2.0" in client.get("/metrics").text)
    redis_client.config_resetstat()
    text = client.get("/metrics").text
    assert "omost_render_queue_depth 0.0" in text
    assert "cmdstat_scan" not in redis_client.info("commandstats")
    first.stop()
    wait_for(lambda: "omost_render_workers 1.0" in client.get("/metrics").text)


def test_a_job_canceled_while_running_is_kept_the_canceled_ttl(
    redis_url: str,
    tmp_path: object,
    start_worker: Callable[..., WorkerThread],
    redis_client: Redis,
) -> None:
    settings = make_settings(redis_url, tmp_path / "r", canceled_ttl_s=120)  # type: ignore[operator]
    renderer = HeldRenderer(hold_at=2)
    start_worker(renderer, settings)
    with TestClient(create_app(settings)) as client:
        job_id = client.post("/v1/renders", json=body()).json()["id"]
        assert renderer.holding.wait(60)
        assert client.post(f"/v1/renders/{job_id}/cancel").json()["status"] == "running"
        renderer.release.set()
        wait_for(lambda: client.get(f"/v1/renders/{job_id}").json()["status"] == "canceled")
    key = constants.job_key(job_id)
    assert redis_client.hget(key, "request") is None
    assert 0 < redis_client.ttl(key) <= 120
