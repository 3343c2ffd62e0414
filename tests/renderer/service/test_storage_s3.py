"""The S3 result store against moto's S3-compatible HTTP server on a local port."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_renderer import FakeRenderer, canvas_json
from fastapi.testclient import TestClient
from omost_renderer.api import create_app
from omost_renderer.config import Settings
from omost_renderer.edits.plans import render_record_key
from omost_renderer.storage.stores import ResultStore, S3ResultStore, build_store, image_key
from omost_renderer.worker.runner import Worker
from PIL import Image
from pydantic import SecretStr
from redis import Redis
from service_support import WorkerThread, make_settings, wait_for

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

BUCKET = "omost-results"
ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key"
PREFIX = "omost-render/"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_client(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # Only the settings supply the endpoint and credentials: nothing may come from the
    # environment or ~/.aws, and no region is needed for an S3-compatible endpoint.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    client.create_bucket(Bucket=BUCKET)
    yield client
    # The server lives for the whole module: empty and drop the bucket between tests.
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)
    client.close()


def _s3_settings(s3_endpoint: str) -> dict[str, object]:
    return {
        "storage": "s3",
        "s3_bucket": BUCKET,
        "s3_endpoint_url": s3_endpoint,
        "s3_access_key_id": SecretStr(ACCESS_KEY),
        "s3_secret_access_key": SecretStr(SECRET_KEY),
    }


@pytest.fixture
def store(s3_client: Any, s3_endpoint: str) -> ResultStore:
    return build_store(Settings.model_validate(_s3_settings(s3_endpoint)))


def _all_keys(s3_client: Any) -> list[str]:
    contents = s3_client.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return sorted(item["Key"] for item in contents)


def _keys(s3_client: Any) -> list[str]:
    """The service's keys (under its prefix), without the prefix; nothing else may exist."""
    keys = _all_keys(s3_client)
    assert all(key.startswith(PREFIX) for key in keys), keys
    return [key.removeprefix(PREFIX) for key in keys]


def test_build_store_gives_an_s3_store(store: ResultStore) -> None:
    assert isinstance(store, S3ResultStore)
    assert store.bucket == BUCKET


def test_s3_store_needs_a_bucket() -> None:
    with pytest.raises(ValueError, match="OMOST_RENDERER_S3_BUCKET"):
        build_store(Settings(storage="s3", s3_bucket=None))


def test_put_get_round_trip(store: ResultStore, s3_client: Any) -> None:
    data = bytes(range(256)) * 64
    key = image_key("job", 1, 0)
    store.put(key, data)
    assert store.get(key) == data
    assert _keys(s3_client) == ["job/1/0.png"]
    head = s3_client.head_object(Bucket=BUCKET, Key=PREFIX + key)
    assert head["ContentType"] == "image/png"
    store.put(key, b"replaced")
    assert store.get(key) == b"replaced"


def test_get_of_a_missing_key_is_none(store: ResultStore) -> None:
    assert store.get("nothing/1/0.png") is None
    store.put("job/1/0.png", b"x")
    assert store.get("job/1/1.png") is None


def test_delete_prefix_removes_only_that_attempt(store: ResultStore, s3_client: Any) -> None:
    for job, attempt in [("job", 1), ("job", 2), ("job", 10), ("jobx", 1)]:
        store.put(image_key(job, attempt, 0), f"{job}-{attempt}".encode())
    store.put(image_key("job", 1, 1), b"second image")
    store.delete_prefix("job/1")
    # ``job/10`` starts with ``job/1`` as a string but is another attempt: it must stay.
    assert _keys(s3_client) == ["job/10/0.png", "job/2/0.png", "jobx/1/0.png"]
    store.delete_prefix("job")
    assert _keys(s3_client) == ["jobx/1/0.png"]
    assert store.get("jobx/1/0.png") == b"jobx-1"


def test_delete_prefix_of_nothing_is_fine(store: ResultStore, s3_client: Any) -> None:
    store.put("job/1/0.png", b"x")
    store.delete_prefix("other")
    assert _keys(s3_client) == ["job/1/0.png"]


def test_cleanup_keeps_new_results(store: ResultStore, s3_client: Any) -> None:
    store.put("a/1/0.png", b"a")
    store.put("b/1/0.png", b"b")
    assert store.cleanup(older_than_s=3600) == 0
    assert _keys(s3_client) == ["a/1/0.png", "b/1/0.png"]


def test_cleanup_removes_old_results(store: ResultStore, s3_client: Any) -> None:
    # Age comes from each object's LastModified; a negative age limit makes everything old
    # without waiting (LastModified has a one-second resolution).
    store.put("a/1/0.png", b"a")
    store.put("a/1/1.png", b"a")
    store.put("b/2/0.png", b"b")
    assert store.cleanup(older_than_s=-3600) == 2  # two jobs went
    assert _keys(s3_client) == []
    assert store.get("a/1/0.png") is None


def test_cleanup_touches_only_the_service_prefix(store: ResultStore, s3_client: Any) -> None:
    # A shared bucket: another application's objects, and loose ones at the root, are not ours
    # however old they are.
    foreign = ["other-app/report.pdf", "a/1/0.png", "omost-render-other/x/1/0.png"]
    for key in foreign:
        s3_client.put_object(Bucket=BUCKET, Key=key, Body=b"not ours")
    store.put("a/1/0.png", b"ours")
    store.delete_prefix("a")
    assert _all_keys(s3_client) == sorted(foreign)
    store.put("b/1/0.png", b"ours")
    assert store.cleanup(older_than_s=-3600) == 1
    assert _all_keys(s3_client) == sorted(foreign)
    assert store.get("other-app/report.pdf") is None  # reads stay under the prefix too


def test_s3_prefix_is_a_setting(s3_client: Any, s3_endpoint: str) -> None:
    values = {**_s3_settings(s3_endpoint), "s3_prefix": "team/renders"}
    custom = build_store(Settings.model_validate(values))
    custom.put("job/1/0.png", b"x")
    assert _all_keys(s3_client) == ["team/renders/job/1/0.png"]
    with pytest.raises(ValueError, match="s3_prefix"):
        Settings.model_validate({**values, "s3_prefix": ""})
    with pytest.raises(ValueError, match="empty"):
        S3ResultStore(s3_client, BUCKET, "/")


@pytest.mark.redis
def test_worker_and_api_serve_results_from_s3(
    s3_client: Any, s3_endpoint: str, redis_url: str, tmp_path: Path
) -> None:
    results_dir = tmp_path / "results"
    settings = make_settings(redis_url, results_dir, **_s3_settings(s3_endpoint))
    redis = Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)
    worker = Worker(settings, FakeRenderer(), redis, build_store(settings), name="s3-worker")  # type: ignore[arg-type]
    thread = WorkerThread(worker).start()
    try:
        with TestClient(create_app(settings)) as client:
            body = {"canvas": canvas_json("a cat"), "width": 64, "height": 128, "steps": 2}
            job_id = client.post("/v1/renders", json=body).json()["id"]
            job: dict[str, Any] = {}

            def finished() -> bool:
                job.update(client.get(f"/v1/renders/{job_id}").json())
                return job["status"] in ("succeeded", "failed")

            wait_for(finished, what=f"job {job_id} to finish")
            assert job["status"] == "succeeded"
            png = client.get(f"/v1/renders/{job_id}/images/0")
        assert png.status_code == 200
        assert Image.open(io.BytesIO(png.content)).size == (64, 128)
    finally:
        thread.stop()
        redis.close()
    # The image and the render record an edit of it needs, under the job's attempt.
    assert _keys(s3_client) == sorted([image_key(job_id, 1, 0), render_record_key(job_id, 1)])
    assert not results_dir.exists()  # nothing went to the file store


@pytest.mark.redis
def test_s3_cleanup_error_does_not_stop_the_worker(
    s3_client: Any, s3_endpoint: str, redis_url: str, tmp_path: Path
) -> None:
    values = {**_s3_settings(s3_endpoint), "s3_bucket": "not-made-yet", "cleanup_interval_s": 0.5}
    settings = make_settings(redis_url, tmp_path / "results", **values)
    redis = Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)
    worker = Worker(settings, FakeRenderer(), redis, build_store(settings), name="s3-cleaner")  # type: ignore[arg-type]
    thread = WorkerThread(worker).start()
    try:
        with TestClient(create_app(settings)) as client:

            def cleanup_reported() -> bool:
                problems = client.get("/ready").json()["problems"]
                return any("NoSuchBucket" in p["message"] for p in problems)

            wait_for(cleanup_reported, what="/ready to report the S3 error")
            assert thread.thread.is_alive()
            s3_client.create_bucket(Bucket="not-made-yet")  # the bucket comes (back)
            wait_for(lambda: client.get("/ready").json()["status"] == "ready", what="recovery")
            metrics = client.get("/metrics").text
        assert 'omost_render_worker_errors_total{component="cleanup"}' in metrics
    finally:
        thread.stop()
        redis.close()
        s3_client.delete_bucket(Bucket="not-made-yet")
