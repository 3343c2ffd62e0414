"""The ``omost`` client against a hostile renderer: it never writes outside its output folder
and never follows an image URL to another host."""

from __future__ import annotations

from pathlib import Path

import pytest
from omost_cli.client import (
    UnsafeAnswerError,
    follow_job,
    image_url,
    save_images,
    submit_render,
)
from omost_cli.main import main
from pytest_httpserver import HTTPServer

PNG = b"\x89PNG\r\n\x1a\nnot really"


def finished(job_id: str, url: str, *, n: object = 0, seed: object = 7) -> dict[str, object]:
    return {
        "id": job_id,
        "status": "succeeded",
        "progress": {"step": 1, "total": 1},
        "images": [{"n": n, "url": url, "seed": seed}],
    }


def test_a_job_id_that_climbs_out_of_the_folder_is_refused(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    out = tmp_path / "out" / "images"
    httpserver.expect_request("/v1/renders/abc").respond_with_json(
        finished("../../x", "/v1/renders/abc/images/0")
    )
    httpserver.expect_request("/v1/renders/abc/images/0").respond_with_data(PNG)
    code = main(["follow", "abc", "--out", str(out), "--renderer-url", httpserver.url_for("")])
    assert code == 1
    assert not list(tmp_path.rglob("*.png"))
    assert not (tmp_path / "x-0-seed7.png").exists()


@pytest.mark.parametrize("job_id", ["../../x", "/etc/passwd", "a/b", "..", "", "a b", "é"])
def test_submit_refuses_a_job_id_that_is_not_a_plain_id(
    httpserver: HTTPServer, job_id: str
) -> None:
    httpserver.expect_request("/v1/renders", method="POST").respond_with_json(
        {"id": job_id, "status": "queued"}, status=202
    )
    with pytest.raises(UnsafeAnswerError):
        submit_render(httpserver.url_for("").rstrip("/"), {"canvas": {}})


def test_an_image_url_on_another_host_is_refused_and_never_fetched(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    elsewhere = HTTPServer(host="127.0.0.1", port=0)
    elsewhere.start()
    try:
        elsewhere.expect_request("/steal").respond_with_data(PNG)
        job = finished("abc", elsewhere.url_for("/steal"))
        with pytest.raises(UnsafeAnswerError):
            save_images(httpserver.url_for("").rstrip("/"), job, tmp_path)
        assert elsewhere.log == []
    finally:
        elsewhere.stop()
    for url in ("//evil.example/x.png", "https://127.0.0.1/x.png", "file:///etc/passwd"):
        with pytest.raises(UnsafeAnswerError):
            image_url("http://127.0.0.1:8001", url)
    assert not list(tmp_path.rglob("*.png"))


@pytest.mark.parametrize(("n", "seed"), [("../x", 7), (0, "1/../../y"), (0.5, 7)])
def test_image_numbers_and_seeds_must_be_integers(
    httpserver: HTTPServer, tmp_path: Path, n: object, seed: object
) -> None:
    httpserver.expect_request("/v1/renders/abc/images/0").respond_with_data(PNG)
    job = finished("abc", "/v1/renders/abc/images/0", n=n, seed=seed)
    with pytest.raises(UnsafeAnswerError):
        save_images(httpserver.url_for("").rstrip("/"), job, tmp_path / "out")
    assert not list(tmp_path.rglob("*.png"))


def test_a_well_behaved_answer_is_saved_in_the_folder(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    httpserver.expect_request("/v1/renders/abc").respond_with_json(
        finished("abc", "/v1/renders/abc/images/0")
    )
    httpserver.expect_request("/v1/renders/abc/images/0").respond_with_data(PNG)
    base = httpserver.url_for("").rstrip("/")
    job = follow_job(base, "abc", interval_s=0)
    paths = save_images(base, job, tmp_path)
    assert paths == [tmp_path / "abc-0-seed7.png"]
    assert paths[0].read_bytes() == PNG
    with pytest.raises(UnsafeAnswerError):
        follow_job(base, "../abc")
