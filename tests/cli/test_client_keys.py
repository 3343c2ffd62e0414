"""The ``omost`` client sends its API key (``--api-key`` or ``$OMOST_API_KEY``) as a Bearer key."""

from __future__ import annotations

from pathlib import Path

import pytest
from omost_cli.main import main
from pytest_httpserver import HTTPServer

PNG = b"\x89PNG\r\n\x1a\nnot really"
KEY = "cli-key-0123456789abc"
CANVAS = """canvas = Canvas()
canvas.set_global_description(description='a cat', detailed_descriptions=['a cat'], tags='cat', HTML_web_color_name='white')
"""  # noqa: E501


def test_render_follow_and_images_send_the_key(
    httpserver: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMOST_API_KEY", KEY)
    bearer = {"Authorization": f"Bearer {KEY}"}
    job = {"id": "abc", "status": "queued", "progress": {"step": 0, "total": 1}}
    done = {
        **job,
        "status": "succeeded",
        "images": [{"n": 0, "url": "/v1/renders/abc/images/0", "seed": 7}],
    }
    httpserver.expect_request("/v1/renders", method="POST", headers=bearer).respond_with_json(
        job, status=202
    )
    httpserver.expect_request("/v1/renders/abc", headers=bearer).respond_with_json(done)
    httpserver.expect_request("/v1/renders/abc/images/0", headers=bearer).respond_with_data(PNG)
    canvas = tmp_path / "cat.py"
    canvas.write_text(CANVAS)
    out = tmp_path / "out"
    url = httpserver.url_for("").rstrip("/")
    assert main(["render", str(canvas), "--out", str(out), "--renderer-url", url]) == 0
    assert (out / "abc-0-seed7.png").read_bytes() == PNG
    httpserver.check_assertions()


def test_a_wrong_key_is_a_clear_error(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_request("/v1/renders/abc").respond_with_json(
        {"error": {"message": "The API key is not valid for this service.", "type": "x"}},
        status=401,
    )
    url = httpserver.url_for("").rstrip("/")
    code = main(["follow", "abc", "--api-key", "wrong", "--renderer-url", url])
    assert code != 0
