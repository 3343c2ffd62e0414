from __future__ import annotations

from hypothesis import given, settings
from omost_schema import Canvas, parse_code
from strategies import canvases


def test_to_code_reprints_the_transcript_exactly(dragon: Canvas, dragon_code: str) -> None:
    assert dragon.to_code() == dragon_code


@given(canvases())
@settings(max_examples=80, deadline=None)
def test_code_round_trip_is_strict_and_exact(canvas: Canvas) -> None:
    result = parse_code(canvas.to_code(), strict=True)
    assert result.canvas == canvas
    assert result.corrections == []
    assert result.warnings == []


def test_to_code_quotes_like_the_models(dragon: Canvas) -> None:
    glob = dragon.global_description.model_copy(
        update={
            "description": "The dragon's lair",
            "tags": 'a "quoted" tag',
            "detailed_descriptions": [],
        }
    )
    code = dragon.model_copy(update={"global_description": glob}).to_code()
    assert '    description="The dragon\'s lair",\n' in code
    assert "    tags='a \"quoted\" tag',\n" in code
    assert "    detailed_descriptions=[],\n" in code


def test_to_code_escapes_backslashes_and_both_quotes(dragon: Canvas) -> None:
    text = 'it\'s a "test" \\ end'
    glob = dragon.global_description.model_copy(update={"description": text})
    canvas = dragon.model_copy(update={"global_description": glob})
    assert parse_code(canvas.to_code(), strict=True).canvas.global_description.description == text


def test_to_code_starts_with_canvas_and_comments_each_local(dragon: Canvas) -> None:
    lines = dragon.to_code().splitlines()
    assert lines[:2] == ["# Initialize the canvas", "canvas = Canvas()"]
    assert lines.count("canvas.add_local_description(") == 4
    assert "# Add a mighty dinosaur." in lines
