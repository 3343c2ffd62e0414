from __future__ import annotations

import pytest
from omost_schema import CanvasCodeError, parse_code

MINIMAL = """canvas = Canvas()
canvas.set_global_description(
    description='A room.',
    detailed_descriptions=['Warm light.'],
    tags='room',
    HTML_web_color_name='black',
)
canvas.add_local_description(
    location='on the left',
    offset='no offset',
    area='a small square area',
    distance_to_viewer=2,
    description='A lamp.',
    detailed_descriptions=[],
    tags='lamp',
    atmosphere='calm',
    style='photo',
    quality_meta='sharp',
    HTML_web_color_name='gold',
)
"""


def _error(code: str, *, strict: bool = False) -> CanvasCodeError:
    with pytest.raises(CanvasCodeError) as caught:
        parse_code(code, strict=strict)
    return caught.value


def test_parse_dragon_transcript_gives_global_and_four_regions(dragon_code: str) -> None:
    result = parse_code(dragon_code, strict=True)
    canvas = result.canvas
    assert result.corrections == []
    assert result.warnings == []
    glob = canvas.global_description
    assert glob.description == "A fierce battle between warriors and a dinosaur."
    assert len(glob.detailed_descriptions) == 8
    assert glob.detailed_descriptions[-1].startswith("The overall atmosphere is one of chaos")
    assert glob.tags.endswith("scales, eyes, burning, illuminated")
    assert glob.HTML_web_color_name == "darkslategray"
    summary = [
        (r.location, r.offset, r.area, r.distance_to_viewer, r.description, r.HTML_web_color_name)
        for r in canvas.local_descriptions
    ]
    assert summary == [
        (
            "on the left",
            "no offset",
            "a large horizontal area",
            5.0,
            "A group of fierce warriors.",
            "darkgoldenrod",
        ),
        (
            "in the center",
            "no offset",
            "a large square area",
            7.0,
            "A mighty dinosaur.",
            "firebrick",
        ),
        (
            "on the top",
            "no offset",
            "a large horizontal area",
            10.0,
            "A stormy sky with flashes of lightning.",
            "midnightblue",
        ),
        (
            "on the bottom",
            "no offset",
            "a large horizontal area",
            5.0,
            "A debris-covered battlefield.",
            "darkolivegreen",
        ),
    ]
    dinosaur = canvas.local_descriptions[1]
    assert dinosaur.detailed_descriptions[2] == (
        "The dinosaur's eyes burn with a fierce intensity, and its teeth are sharp and menacing."
    )
    assert dinosaur.atmosphere == "Intense and menacing, with a powerful presence."
    assert (
        dinosaur.style == "Epic and dramatic, emphasizing the grandeur and danger of the dinosaur."
    )
    assert dinosaur.quality_meta == "High resolution with dramatic lighting and detailed textures."
    assert [len(r.detailed_descriptions) for r in canvas.local_descriptions] == [6, 6, 5, 5]


def test_parse_answer_with_prose_uses_first_python_block(dragon_code: str) -> None:
    answer = f"Sure, here it is.\n\n```python\n{dragon_code}```\n\nEnjoy!\n```python\nx\n```\n"
    assert parse_code(answer, strict=True).canvas == parse_code(dragon_code).canvas


def test_parse_error_lines_count_from_callers_text() -> None:
    code = MINIMAL.replace("distance_to_viewer=2,", "distance_to_viewer=-2,")
    bare = _error(code)
    fenced = _error(f"Prose line one.\nProse line two.\n```python\n{code}```\n")
    assert bare.line == 12
    assert bare.column == 24
    assert fenced.line == bare.line + 3
    assert fenced.column == bare.column
    assert "distance_to_viewer" in fenced.message
    assert "greater than 0" in fenced.message


def test_parse_accepts_implicit_concatenation_triple_quotes_and_comments() -> None:
    code = MINIMAL.replace(
        "description='A room.',", "description='A ' \"room\"  # note\n        '.',"
    )
    code = code.replace("tags='room',", 'tags="""room""",')
    canvas = parse_code(code, strict=True).canvas
    assert canvas.global_description.description == "A room."
    assert canvas.global_description.tags == "room"


def test_parse_without_canvas_constructor_is_fine() -> None:
    canvas = parse_code(MINIMAL.replace("canvas = Canvas()\n", ""), strict=True).canvas
    assert canvas.local_descriptions[0].distance_to_viewer == 2.0


def test_parse_keeps_unicode_columns_in_characters() -> None:
    code = MINIMAL.replace("tags='lamp',", "tags='lampe à huile 🐉', atmosphere=1,")
    code = code.replace("    atmosphere='calm',\n", "")
    error = _error(code)
    line = code.splitlines()[error.line - 1]
    assert line[error.column - 1 :].startswith("1,")
    assert "atmosphere" in error.message


def test_parse_missing_global_is_an_error() -> None:
    code = MINIMAL.split("canvas.add_local_description(")[0].replace("set_global", "add_local")
    local_only = "canvas.add_local_description(" + MINIMAL.split("canvas.add_local_description(")[1]
    assert "missing canvas.set_global_description" in _error(local_only).message
    assert "missing argument(s)" in _error(code).message


def test_parse_second_global_is_an_error() -> None:
    glob = MINIMAL.split("canvas.add_local_description(")[0].replace("canvas = Canvas()\n", "")
    error = _error(MINIMAL + glob)
    assert "only once" in error.message
    assert error.line == MINIMAL.count("\n") + 1


def test_parse_missing_arguments_are_named() -> None:
    code = MINIMAL.replace("    area='a small square area',\n", "").replace(
        "    style='photo',\n", ""
    )
    error = _error(code)
    assert error.message == "add_local_description is missing argument(s): area, style"
    assert error.line == 8


def test_parse_unknown_and_repeated_arguments_are_errors() -> None:
    assert (
        "has no argument 'colour'"
        in _error(MINIMAL.replace("tags='lamp'", "colour='lamp'")).message
    )
    repeated = MINIMAL.replace("tags='lamp',", "tags='lamp', tags='x',")
    assert "given twice" in _error(repeated).message


def test_parse_positional_arguments_lenient_only() -> None:
    code = (
        "canvas.set_global_description('A room.', ['Warm light.'], 'room', 'black')\n"
        "canvas.add_local_description('on the left', 'no offset', 'a small square area', 2,"
        " 'A lamp.', [], 'lamp', 'calm', 'photo', quality_meta='sharp',"
        " HTML_web_color_name='gold')\n"
    )
    result = parse_code(code)
    assert result.canvas == parse_code(MINIMAL).canvas
    assert len(result.warnings) == 2
    assert "positional" in result.warnings[0]
    assert "keywords" in _error(code, strict=True).message
    too_many = code.replace("'black')", "'black', 'extra')")
    assert "takes 4 arguments" in _error(too_many).message


def test_parse_corrects_near_miss_names_when_lenient() -> None:
    code = MINIMAL.replace("'on the left'", "'top left'").replace("'gold'", "'Gold'")
    code = code.replace("'a small square area'", "'small square'")
    result = parse_code(code)
    local = result.canvas.local_descriptions[0]
    assert (local.location, local.area, local.HTML_web_color_name) == (
        "on the left",
        "a small square area",
        "gold",
    )
    assert [(c.kind, c.original, c.corrected, c.line) for c in result.corrections] == [
        ("location", "top left", "on the left", 9),
        ("area", "small square", "a small square area", 11),
        ("color", "Gold", "gold", 19),
    ]
    assert len(result.warnings) == 3
    assert "'top left'" in result.warnings[0]
    assert result.warnings[0].startswith("line 9:")


def test_parse_strict_refuses_near_miss_names() -> None:
    error = _error(MINIMAL.replace("'on the left'", "'top left'"), strict=True)
    assert error.line == 9
    assert "location" in error.message


def test_parse_name_with_nothing_close_is_an_error() -> None:
    error = _error(MINIMAL.replace("'gold'", "'no such colour at all'"))
    assert error.line == 19
    assert "HTML_web_color_name" in error.message


def test_parse_list_item_error_points_at_the_item() -> None:
    code = MINIMAL.replace("['Warm light.']", "[\n        'ok',\n        'bad\\x00',\n    ]")
    error = _error(code)
    assert (error.line, error.column) == (6, 9)
    assert "detailed_descriptions" in error.message


def test_parse_refuses_non_string_list_items_and_wrong_types() -> None:
    assert "list items must be strings" in _error(MINIMAL.replace("['Warm light.']", "[1]")).message
    assert "tags" in _error(MINIMAL.replace("tags='lamp'", "tags=5")).message
    assert (
        "True" in _error(MINIMAL.replace("distance_to_viewer=2", "distance_to_viewer=True")).message
    )
    assert "None" in _error(MINIMAL.replace("tags='lamp'", "tags=None")).message
    assert "tuples" in _error(MINIMAL.replace("['Warm light.']", "('a',)")).message


def test_parse_number_forms() -> None:
    for written, value in [("2", 2.0), ("2.5", 2.5), ("1e3", 1000.0), ("+3", 3.0)]:
        code = MINIMAL.replace("distance_to_viewer=2", f"distance_to_viewer={written}")
        assert (
            parse_code(code, strict=True).canvas.local_descriptions[0].distance_to_viewer == value
        )
    for written in ["-2", "0", "1e400", "10**9"]:
        _error(MINIMAL.replace("distance_to_viewer=2", f"distance_to_viewer={written}"))


def test_parse_canvas_constructor_must_come_first() -> None:
    error = _error(MINIMAL.replace("canvas = Canvas()\n", "") + "canvas = Canvas()\n")
    assert "first statement" in error.message


def test_parse_refuses_too_many_calls() -> None:
    local = "canvas.add_local_description(" + MINIMAL.split("canvas.add_local_description(")[1]
    error = _error(MINIMAL + local * 24)
    assert "too many calls" in error.message
    assert parse_code(MINIMAL + local * 23).canvas.local_descriptions[-1].description == "A lamp."


def test_parse_empty_text_is_missing_global() -> None:
    assert "missing canvas.set_global_description" in _error("").message
    assert "missing canvas.set_global_description" in _error("# nothing\n").message
    assert "not valid Python" in _error("Sorry, I cannot.").message
