from __future__ import annotations

import io
from collections.abc import Callable, Iterator

import pytest
from fake_renderer import FakeRenderer, canvas_json
from fastapi.testclient import TestClient
from omost_renderer.api import create_app
from omost_renderer.config import Settings
from omost_renderer.job_queue import constants
from PIL import Image
from redis import Redis

pytestmark = pytest.mark.redis

from service_support import WorkerThread, make_settings, wait_for  # noqa: E402


def body(description: str = "a cat on a sofa", **params: object) -> dict[str, object]:
    values: dict[str, object] = {"canvas": canvas_json(description), "width": 64, "height": 128}
    values["steps"] = 4
    values.update(params)
    return values


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def wait_status(client: TestClient, job_id: str, *statuses: str) -> dict[str, object]:
    seen: dict[str, object] = {}

    def done() -> bool:
        seen.update(client.get(f"/v1/renders/{job_id}").json())
        return seen["status"] in statuses

    wait_for(done, what=f"job {job_id} to reach {statuses}")
    return seen


def test_submit_answers_202_with_location_and_queue_position(client: TestClient) -> None:
    first = client.post("/v1/renders", json=body())
    second = client.post("/v1/renders", json=body())
    assert first.status_code == 202
    job = second.json()
    assert job["status"] == "queued"
    assert second.headers["location"] == f"/v1/renders/{job['id']}"
    assert job["queue_position"] == 1
    assert job["attempts"] == 0
    got = client.get(f"/v1/renders/{job['id']}").json()
    assert got["id"] == job["id"]
    assert got["progress"] == {"step": 0, "total": 0}


def test_invalid_body_answers_400_in_openai_envelope(client: TestClient) -> None:
    response = client.post("/v1/renders", json={"canvas": canvas_json(), "width": 100})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "width"
    neither = client.post("/v1/renders", json={"width": 64})
    assert neither.status_code == 400


def test_unknown_job_answers_404(client: TestClient) -> None:
    response = client.get("/v1/renders/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_same_idempotency_key_gives_same_job(client: TestClient, redis_client: Redis) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = client.post("/v1/renders", json=body(), headers=headers).json()
    again = client.post("/v1/renders", json=body(), headers=headers).json()
    other = client.post("/v1/renders", json=body(), headers={"Idempotency-Key": "order-43"}).json()
    assert again["id"] == first["id"]
    assert other["id"] != first["id"]
    assert redis_client.xlen(constants.STREAM_KEY) == 2


def test_same_idempotency_key_with_another_body_is_refused(
    client: TestClient, redis_client: Redis
) -> None:
    headers = {"Idempotency-Key": "order-44"}
    first = client.post("/v1/renders", json=body(seed=1), headers=headers)
    other = client.post("/v1/renders", json=body(seed=2), headers=headers)
    assert other.status_code == 422
    error = other.json()["error"]
    assert error["code"] == "idempotency_key_reused"
    assert error["type"] == "invalid_request_error"
    assert first.json()["id"] in error["message"]
    again = client.post("/v1/renders", json=body(seed=1), headers=headers)
    assert again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert redis_client.xlen(constants.STREAM_KEY) == 1


def test_idempotency_key_of_an_expired_job_makes_a_new_job(
    client: TestClient, redis_client: Redis
) -> None:
    headers = {"Idempotency-Key": "order-45"}
    first = client.post("/v1/renders", json=body(), headers=headers).json()
    redis_client.delete(constants.job_key(first["id"]))  # the job's record expired
    again = client.post("/v1/renders", json=body(), headers=headers)
    assert again.status_code == 202
    assert again.json()["id"] != first["id"]
    assert client.get(f"/v1/renders/{again.json()['id']}").status_code == 200
    # The key now maps to the new job, for the same body only.
    third = client.post("/v1/renders", json=body(), headers=headers).json()
    assert third["id"] == again.json()["id"]
    assert client.post("/v1/renders", json=body(seed=9), headers=headers).status_code == 422


def test_code_corrections_and_warnings_are_in_the_job_view(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    from omost_schema import Canvas

    code = Canvas.model_validate(canvas_json("near miss")).to_code()
    code = code.replace("location='in the center'", "location='in the centre'")
    with caplog.at_level("INFO", logger="omost_renderer.api.renders"):
        job = client.post("/v1/renders", json={"code": code, "width": 64, "height": 64}).json()
    fix = {"kind": "location", "original": "in the centre", "corrected": "in the center"}
    assert [{k: c[k] for k in fix} for c in job["corrections"]] == [fix]
    assert job["corrections"][0]["line"] > 0
    assert any("in the centre" in warning for warning in job["warnings"])
    assert client.get(f"/v1/renders/{job['id']}").json()["corrections"] == job["corrections"]
    assert any(
        job["id"] in r.getMessage() and "in the centre" in r.getMessage() for r in caplog.records
    )
    clean = client.post("/v1/renders", json=body()).json()
    assert clean["corrections"] == []
    assert clean["warnings"] == []


def test_full_queue_answers_503_with_retry_after_and_never_trims(
    redis_url: str, tmp_path: object, redis_client: Redis
) -> None:
    settings = make_settings(redis_url, tmp_path / "r", max_backlog=2)  # type: ignore[operator]
    with TestClient(create_app(settings)) as client:
        ids = [client.post("/v1/renders", json=body()).json()["id"] for _ in range(2)]
        full = client.post("/v1/renders", json=body())
        assert full.status_code == 503
        assert full.headers["retry-after"] == "7"
        assert full.json()["error"]["code"] == "queue_full"
        assert redis_client.xlen(constants.STREAM_KEY) == 2
        assert [client.get(f"/v1/renders/{i}").json()["status"] for i in ids] == ["queued"] * 2


def test_job_runs_to_a_png_of_the_requested_size(
    client: TestClient, start_worker: Callable[..., WorkerThread], redis_client: Redis
) -> None:
    start_worker()
    job = client.post("/v1/renders", json=body(num_images=2, seed=7)).json()
    done = wait_status(client, job["id"], "succeeded", "failed")
    assert done["status"] == "succeeded"
    assert done["attempts"] == 1
    assert done["progress"] == {"step": 4, "total": 4}
    assert [image["seed"] for image in done["images"]] == [7, 8]  # type: ignore[index]
    png = client.get(f"/v1/renders/{job['id']}/images/1")
    assert png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (64, 128)
    assert client.get(f"/v1/renders/{job['id']}/images/2").status_code == 404
    assert redis_client.ttl(constants.job_key(job["id"])) > 0
    assert redis_client.xlen(constants.STREAM_KEY) == 0


def test_sketch_is_a_png_of_the_render_size(client: TestClient) -> None:
    job = client.post("/v1/renders", json=body()).json()
    sketch = client.get(f"/v1/renders/{job['id']}/sketch")
    assert sketch.status_code == 200
    assert Image.open(io.BytesIO(sketch.content)).size == (64, 128)


def test_cancel_while_queued_never_runs(
    client: TestClient, start_worker: Callable[..., WorkerThread]
) -> None:
    renderer = FakeRenderer()
    job = client.post("/v1/renders", json=body("canceled before it ran")).json()
    canceled = client.post(f"/v1/renders/{job['id']}/cancel")
    assert canceled.json()["status"] == "canceled"
    start_worker(renderer)
    later = client.post("/v1/renders", json=body()).json()
    assert wait_status(client, later["id"], "succeeded")["status"] == "succeeded"
    assert renderer.calls == 1
    assert client.get(f"/v1/renders/{job['id']}").json()["attempts"] == 0


def test_cancel_while_running_stops_within_a_step(
    client: TestClient, start_worker: Callable[..., WorkerThread]
) -> None:
    start_worker(FakeRenderer(step_sleep_s=0.05))
    job = client.post("/v1/renders", json=body(steps=100)).json()
    wait_for(lambda: client.get(f"/v1/renders/{job['id']}").json()["progress"]["step"] >= 2)
    assert client.post(f"/v1/renders/{job['id']}/cancel").status_code == 200
    done = wait_status(client, job["id"], "canceled", "succeeded")
    assert done["status"] == "canceled"
    assert done["progress"]["step"] < 100  # type: ignore[index]
    assert client.post(f"/v1/renders/{job['id']}/cancel").json()["status"] == "canceled"


def test_cancel_of_finished_job_is_a_conflict(
    client: TestClient, start_worker: Callable[..., WorkerThread]
) -> None:
    start_worker()
    job = client.post("/v1/renders", json=body()).json()
    wait_status(client, job["id"], "succeeded")
    response = client.post(f"/v1/renders/{job['id']}/cancel")
    assert response.status_code == 409


def test_health_ready_and_metrics(
    client: TestClient, start_worker: Callable[..., WorkerThread]
) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").status_code == 200
    start_worker()
    job = client.post("/v1/renders", json=body()).json()
    wait_status(client, job["id"], "succeeded")
    text = client.get("/metrics").text
    assert "omost_render_queue_depth 0.0" in text
    assert "omost_render_wait_seconds_count 1.0" in text
    assert "omost_render_run_seconds_count 1.0" in text
    assert "omost_render_dead_letters 0.0" in text


def test_submit_as_omost_code_renders_the_same_canvas(client: TestClient) -> None:
    from omost_schema import Canvas

    code = Canvas.model_validate(canvas_json("from code")).to_code()
    job = client.post("/v1/renders", json={"code": code, "width": 64, "height": 64})
    assert job.status_code == 202
    sketch = client.get(f"/v1/renders/{job.json()['id']}/sketch")
    assert Image.open(io.BytesIO(sketch.content)).size == (64, 64)
    broken = client.post("/v1/renders", json={"code": "canvas = Canvas()\nimport os"})
    assert broken.status_code == 400
    assert broken.json()["error"]["param"] == "code"


def test_redis_down_answers_503_on_submit(tmp_path: object) -> None:
    from service_support import free_port

    settings = make_settings(f"redis://127.0.0.1:{free_port()}/0", tmp_path / "r")  # type: ignore[operator]
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/renders", json=body())
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.json()["error"]["code"] == "backend_unavailable"
        assert client.get("/health").status_code == 200


def test_unexpected_error_is_a_500_in_the_envelope(settings: Settings) -> None:
    app = create_app(settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("unexpected")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
