"""Lenient repairs of model slips, each reported, and refused in strict mode."""

from __future__ import annotations

import pytest
from omost_schema import CanvasCodeError, parse_code
from omost_schema.code_repair import drop_cut_off_call, repair_quotes

QUOTED_ITEM = "        'Surrounding the 'O' are letters.',"


def _with_line(code: str, number: int, line: str) -> str:
    lines = code.split("\n")
    lines[number - 1] = line
    return "\n".join(lines)


def test_inner_quotes_in_list_item_are_escaped(dragon_code: str) -> None:
    code = _with_line(dragon_code, 10, QUOTED_ITEM)
    result = parse_code(code)
    items = result.canvas.global_description.detailed_descriptions
    assert items[2] == "Surrounding the 'O' are letters."
    assert len(items) == 8
    [correction] = result.corrections
    assert correction.kind == "quote"
    assert correction.line == 10
    assert correction.original == "'Surrounding the 'O' are letters.'"
    assert correction.corrected == "'Surrounding the \\'O\\' are letters.'"
    assert result.warnings == [
        "line 10: escaped the quotes inside the string 'Surrounding the 'O' are letters.'"
    ]


def test_inner_quotes_in_keyword_value_and_double_quotes(dragon_code: str) -> None:
    code = dragon_code.replace(
        "    atmosphere='Intense and menacing, with a powerful presence.',",
        '    atmosphere="The beast roars "now" and "forever"",',
    ).replace(
        "    style='Epic and dramatic, emphasizing the grandeur and danger of the dinosaur.',",
        "    style='It's epic'),".replace(")", ""),
    )
    result = parse_code(code)
    dinosaur = result.canvas.local_descriptions[1]
    assert dinosaur.atmosphere == 'The beast roars "now" and "forever"'
    assert dinosaur.style == "It's epic"
    assert [c.kind for c in result.corrections] == ["quote", "quote"]
    with pytest.raises(CanvasCodeError, match="not valid Python"):
        parse_code(code, strict=True)


def test_inner_quote_repair_keeps_the_writers_escapes() -> None:
    repair = repair_quotes("x = 1\n    tags='a \\n 'b' \\\\',", 2)
    assert repair is not None
    assert repair.code == "x = 1\n    tags='a \\n \\'b\\' \\\\',"


@pytest.mark.parametrize(
    "line",
    [
        "    tags='no inner quotes',",  # nothing to repair
        "    description='a', tags='b',",  # two values: ambiguous
        "        'a', 'b',",  # two list items: ambiguous
        "    tags='''triple''',",  # triple quotes are not this slip
        "    tags='cut off",  # no closing quote
        "    tags=call('x')",  # not a quoted value
    ],
)
def test_inner_quote_repair_leaves_other_lines(line: str) -> None:
    assert repair_quotes(line, 1) is None


def test_ambiguous_quote_line_stays_an_error(dragon_code: str) -> None:
    code = _with_line(dragon_code, 10, "        'It's one', 'It's two',")
    with pytest.raises(CanvasCodeError) as caught:
        parse_code(code)
    assert caught.value.line == 10


@pytest.mark.parametrize(
    ("marker", "kept_locals"),
    [
        ("canvas.add_local_description(\n    location='in the center'", 1),
        ("    distance_to_viewer=7.0", 1),
        ("'The sky is turbulent, with", 2),
        ("are strewn across the battlefield", 3),
        ("HTML_web_color_name='darkolivegreen'", 3),
    ],
)
def test_cut_off_answer_keeps_complete_calls(
    dragon_code: str, marker: str, kept_locals: int
) -> None:
    complete = parse_code(dragon_code).canvas
    cut = dragon_code[: dragon_code.index(marker) + len(marker) // 2]
    answer = "Here is the canvas:\n```python\n" + cut
    result = parse_code(answer)
    kept = result.canvas.local_descriptions
    assert kept == complete.local_descriptions[:kept_locals]
    assert result.canvas.global_description == complete.global_description
    [correction] = result.corrections
    assert correction.kind == "truncation"
    assert correction.original.startswith("canvas.add_local_description(")
    assert correction.line == answer.count("\n", 0, answer.rindex(correction.original)) + 1
    assert any("cut off" in warning for warning in result.warnings)
    with pytest.raises(CanvasCodeError):
        parse_code(answer, strict=True)


@pytest.mark.parametrize("tail", ["canvas", "canvas.add_loc", "canvas.add_local_description"])
def test_cut_off_inside_a_method_name_is_dropped(dragon_code: str, tail: str) -> None:
    result = parse_code(dragon_code + "\n" + tail)
    assert len(result.canvas.local_descriptions) == 4
    assert [c.kind for c in result.corrections] == ["truncation"]
    with pytest.raises(CanvasCodeError):
        parse_code(dragon_code + "\n" + tail, strict=True)


def test_cut_off_inside_global_is_an_error_that_says_so(dragon_code: str) -> None:
    with pytest.raises(CanvasCodeError, match="cut off"):
        parse_code(dragon_code[:600])


def test_cut_off_with_broken_quote_gets_both_repairs(dragon_code: str) -> None:
    code = _with_line(dragon_code, 10, QUOTED_ITEM)
    result = parse_code(code[: int(len(code) * 0.7)])
    assert sorted(c.kind for c in result.corrections) == ["quote", "truncation"]
    assert result.canvas.global_description.detailed_descriptions[2] == (
        "Surrounding the 'O' are letters."
    )


def test_error_in_an_earlier_call_is_not_dropped(dragon_code: str) -> None:
    # A missing closing parenthesis in the first local: later calls exist, so it is no cut-off.
    lines = dragon_code.split("\n")
    close = lines.index(")", 30)
    broken = "\n".join(lines[:close] + lines[close + 1 :])
    with pytest.raises(CanvasCodeError, match="not valid Python"):
        parse_code(broken)
    missing_comma = dragon_code.replace(
        "    offset='no offset',\n    area='a large square area',",
        "    offset='no offset'\n    area='a large square area',",
    )
    with pytest.raises(CanvasCodeError, match="not valid Python"):
        parse_code(missing_comma)


def test_drop_cut_off_call_needs_open_last_call() -> None:
    assert drop_cut_off_call("canvas.a(\n    x='y',\n)\n", 2) is None
    cut = drop_cut_off_call("canvas.a(x=1)\ncanvas.b(\n    x='y", 3)
    assert cut is not None
    assert cut.code == "canvas.a(x=1)\n"
    assert cut.line == 2
    assert drop_cut_off_call("canvas.a(x=1)\ncanvas.b(\n    x='y", 1) is None


def test_repairs_are_capped(dragon_code: str) -> None:
    lines = dragon_code.split("\n")
    for number, line in enumerate(lines):
        if line.startswith("        '"):
            lines[number] = "        'a 'b' c',"
    with pytest.raises(CanvasCodeError, match="more than 16 repairs"):
        parse_code("\n".join(lines))
