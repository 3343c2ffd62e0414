from __future__ import annotations

import pytest
from omost_schema.code_parser import parse_code
from omost_schema.code_source import extract_code, last_statement_start, scan_brackets
from omost_schema.errors import CanvasCodeError


def test_extract_code_takes_first_python_block_and_its_offset() -> None:
    text = "Intro\n\n```json\n{}\n```\n```python\na = 1\n```\n```python\nb = 2\n```\n"
    source = extract_code(text)
    assert source.code == "a = 1\n"
    assert source.line_offset == 6
    assert (source.fenced, source.closed) == (True, True)


@pytest.mark.parametrize("opening", ["```", "```python", "```Python", "```py", "``` python  "])
def test_extract_code_accepts_plain_and_python_fences(opening: str) -> None:
    assert extract_code(f"x\n{opening}\ncode\n```\n").code == "code\n"


def test_extract_code_without_fence_is_whole_text() -> None:
    source = extract_code("canvas = Canvas()\n")
    assert source.code == "canvas = Canvas()\n"
    assert (source.line_offset, source.fenced) == (0, False)


def test_extract_code_unclosed_fence_runs_to_end() -> None:
    source = extract_code("Here:\n```python\ncanvas.add(")
    assert source.code == "canvas.add("
    assert (source.line_offset, source.closed) == (2, False)


@pytest.mark.parametrize(
    ("text", "line"), [("```", 1), ("prose\n```", 2), ("a\nb\n```python\ncode\n", 3)]
)
def test_unclosed_fence_is_reported_on_its_own_line(text: str, line: int) -> None:
    # Also when the text ends on the fence's line, where no code line follows it.
    with pytest.raises(CanvasCodeError) as caught:
        parse_code(text, strict=True)
    assert caught.value.line == line
    assert extract_code(text).fence_line == line


def test_extract_code_ignores_indented_backticks_inside_strings() -> None:
    text = "canvas.x(\n    tags='```python',\n)\n"
    assert extract_code(text).code == text


def test_scan_brackets_depth_ignores_strings_and_comments() -> None:
    scan = scan_brackets("f([\n  '((((', \"[[[\", '''(((\n((('''  # (((((\n])\n")
    assert scan.max_depth == 2
    assert scan.deepest_line == 1
    assert not scan.open_at_end


@pytest.mark.parametrize("code", ["f(\n  x=1,", "f(x='abc", "f(x='''abc\n", "[[", "f(x='it\\'s"])
def test_scan_brackets_sees_cut_off_code(code: str) -> None:
    assert scan_brackets(code).open_at_end


def test_scan_brackets_reports_deepest_line() -> None:
    scan = scan_brackets("a\nb\n(([[\n]]))\n")
    assert (scan.max_depth, scan.deepest_line) == (4, 3)


def test_last_statement_start_finds_column_zero_names() -> None:
    code = "canvas = Canvas()\ncanvas.a(\n    x=1,\n)\n# comment\n"
    assert last_statement_start(code) == code.index("canvas.a")
    assert last_statement_start("    x\n# y\n") is None
