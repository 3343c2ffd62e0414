from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from omost_schema import Canvas, Rect
from pydantic import ValidationError
from strategies import canvases

LOCAL = {
    "location": "on the left",
    "offset": "no offset",
    "area": "a large square area",
    "distance_to_viewer": 1.0,
    "description": "d",
    "detailed_descriptions": [],
    "tags": "",
    "atmosphere": "",
    "style": "",
    "quality_meta": "",
    "HTML_web_color_name": "red",
}
GLOBAL = {
    "description": "g",
    "detailed_descriptions": ["x"],
    "tags": "t",
    "HTML_web_color_name": "blue",
}


@given(canvases())
@settings(max_examples=60, deadline=None)
def test_canvas_json_round_trip(canvas: Canvas) -> None:
    assert Canvas.model_validate_json(canvas.model_dump_json()) == canvas


def test_canvas_validates_a_plain_document() -> None:
    canvas = Canvas.model_validate({"global_description": GLOBAL, "local_descriptions": [LOCAL]})
    assert canvas.local_descriptions[0].rect == Rect(10, 80, 0, 50)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("location", "top left"),
        ("HTML_web_color_name", "Red"),
        ("distance_to_viewer", 0.0),
        ("distance_to_viewer", -5.0),
        ("distance_to_viewer", float("inf")),
        ("description", "line\nbreak"),
        ("description", "x" * 501),
        ("detailed_descriptions", ["x"] * 17),
    ],
)
def test_canvas_refuses_invalid_local_fields(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        Canvas.model_validate(
            {"global_description": GLOBAL, "local_descriptions": [{**LOCAL, field: value}]}
        )


def test_canvas_refuses_unknown_fields_and_missing_global() -> None:
    with pytest.raises(ValidationError):
        Canvas.model_validate({"global_description": {**GLOBAL, "extra": 1}})
    with pytest.raises(ValidationError):
        Canvas.model_validate({"local_descriptions": [LOCAL]})


def test_canvas_refuses_more_than_24_locals() -> None:
    with pytest.raises(ValidationError):
        Canvas.model_validate({"global_description": GLOBAL, "local_descriptions": [LOCAL] * 25})


def test_from_code_logs_each_correction_at_warning(
    dragon_code: str, caplog: pytest.LogCaptureFixture
) -> None:
    code = dragon_code.replace("'darkgoldenrod'", "'dark golden rod'")
    with caplog.at_level(logging.WARNING, logger="omost_schema"):
        canvas = Canvas.from_code(code)
    assert canvas.local_descriptions[0].HTML_web_color_name == "darkgoldenrod"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "dark golden rod" in warnings[0].getMessage()
    assert "darkgoldenrod" in warnings[0].getMessage()


def test_from_code_without_corrections_logs_nothing(
    dragon_code: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="omost_schema"):
        Canvas.from_code(dragon_code)
    assert caplog.records == []
