"""``omost compose`` streams the answer and draws a token progress bar as the canvas is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omost_cli.main import main
from omost_llm.config import OutputMode, Settings
from omost_llm.main import create_app
from omost_schema import Canvas

from tests.llm.fakes import FakeBackend, fenced, make_canvas
from tests.renderer.service.threaded_server import serve as serve_app


@pytest.mark.parametrize("output", [OutputMode.CODE, OutputMode.JSON])
def test_compose_draws_a_token_bar_and_prints_the_canvas(
    output: OutputMode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    canvas = make_canvas(locals_=2)
    text = canvas.model_dump_json() if output is OutputMode.JSON else fenced(canvas)
    fake = FakeBackend(outputs=[text])
    settings = Settings(model="test-model", warmup=False, output=output)
    out = tmp_path / "canvas.json"
    previous = tmp_path / "previous.json"
    previous.write_text(make_canvas("blue").model_dump_json())
    with serve_app(create_app(settings, fake)) as url:
        code = main(
            ["compose", "a cat", "--llm-url", url, "--previous", str(previous),
             "--max-tokens", "900", "--out", str(out)]
        )  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    assert Canvas.from_code(captured.out, strict=True) == canvas
    assert Canvas.model_validate(json.loads(out.read_text())) == canvas
    bars = [part for part in captured.err.split("\r") if "tokens" in part]
    assert len(bars) >= 3
    assert "/900 tokens" in bars[-1]
    # The edit went as Omost saw edits: the previous canvas as the model's own answer.
    assert [m.role for m in fake.requests[0].messages] == ["system", "user", "assistant", "user"]
