"""Hostile code is refused and never run: each program would touch a sentinel file if executed."""

from __future__ import annotations

from pathlib import Path

import pytest
from omost_schema import CanvasCodeError, parse_code
from omost_schema.limits import MAX_CODE_CHARS

GLOBAL = (
    "canvas.set_global_description(description='d', detailed_descriptions=[], tags='t',"
    " HTML_web_color_name='red')\n"
)


def _hostile_programs(sentinel: Path) -> dict[str, tuple[str, str]]:
    """Name -> (program, expected words in the error); each writes ``sentinel`` if executed."""
    touch = f"open({str(sentinel)!r}, 'w').write('ran')"
    return {
        "import": (f"import os\nos.system('touch {sentinel}')\n" + GLOBAL, "imports"),
        "from import": (
            f"from pathlib import Path\nPath({str(sentinel)!r}).touch()\n" + GLOBAL,
            "imports",
        ),
        "dunder import": (
            f"__import__('os').system('touch {sentinel}')\n" + GLOBAL,
            "may be called",
        ),
        "open call": (touch + "\n" + GLOBAL, "may be called"),
        "attribute chain": (GLOBAL + "canvas.__class__.__init__.__globals__\n", "attribute access"),
        "method on other object": (GLOBAL + "os.system('x')\n", "is not allowed"),
        "other canvas method": (
            GLOBAL + "canvas.process()\n",
            "canvas.process(...) is not allowed",
        ),
        "call in argument": (GLOBAL.replace("tags='t'", f"tags={touch}"), "calls are not allowed"),
        "lambda": (GLOBAL.replace("tags='t'", f"tags=(lambda: {touch})()"), "calls"),
        "lambda value": (GLOBAL.replace("tags='t'", f"tags=lambda: {touch}"), "lambdas"),
        "f-string": (GLOBAL.replace("tags='t'", f'tags=f"{{{touch}}}"'), "f-strings"),
        "comprehension": (
            GLOBAL.replace(
                "detailed_descriptions=[]", f"detailed_descriptions=[{touch} for _ in 'a']"
            ),
            "comprehensions",
        ),
        "for loop": (f"for _ in [1]:\n    {touch}\n" + GLOBAL, "loops"),
        "while loop": (f"while True:\n    {touch}\n    break\n" + GLOBAL, "loops"),
        "walrus": (GLOBAL.replace("tags='t'", f"tags=(x := {touch})"), "assignment expressions"),
        "decorator": (
            f"@{touch.split('(')[0]}\ndef f():\n    pass\n" + GLOBAL,
            "function definitions",
        ),
        "class": (f"class A:\n    {touch}\n" + GLOBAL, "class definitions"),
        "name as value": (GLOBAL.replace("tags='t'", "tags=secret"), "names cannot be used"),
        "starred": (GLOBAL.replace("(description", "(*[1], description"), "starred"),
        "double star": (GLOBAL.replace("(description", "(**{'a': 1}, description"), "**keyword"),
        "assignment": (f"x = {touch}\n" + GLOBAL, "assignments"),
        "exec": (f"exec({touch!r})\n" + GLOBAL, "may be called"),
        "eval in argument": (GLOBAL.replace("tags='t'", f"tags=eval({touch!r})"), "calls"),
        "subscript": (GLOBAL.replace("tags='t'", "tags=globals()['x']"), "indexing"),
        "huge power": (GLOBAL.replace("tags='t'", "tags=9**9**9**9"), "operators"),
        "with": (f"with open({str(sentinel)!r}, 'w'):\n    pass\n" + GLOBAL, "with statements"),
    }


@pytest.mark.parametrize("name", sorted(_hostile_programs(Path("x"))))
def test_hostile_code_is_refused_and_never_run(name: str, tmp_path: Path) -> None:
    sentinel = tmp_path / "sentinel"
    program, words = _hostile_programs(sentinel)[name]
    for strict in (False, True):
        with pytest.raises(CanvasCodeError) as caught:
            parse_code(program, strict=strict)
        assert words in caught.value.message
        assert caught.value.line is not None
    assert not sentinel.exists()


def test_hostile_code_in_fenced_answer_reports_callers_line(tmp_path: Path) -> None:
    answer = "Here:\n```python\n" + GLOBAL + "import os\n```\n"
    with pytest.raises(CanvasCodeError, match="imports") as caught:
        parse_code(answer)
    assert caught.value.line == 4


@pytest.mark.parametrize("depth", [9, 200, 10_000])
def test_deeply_nested_brackets_refused_before_parsing(depth: int) -> None:
    program = GLOBAL.replace("tags='t'", "tags=" + "[" * depth + "]" * depth)
    with pytest.raises(CanvasCodeError, match="nested") as caught:
        parse_code(program)
    assert caught.value.line == 1


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    program = GLOBAL.replace("tags='t'", "tags='" + "(" * 100 + "[[\\'[[' \"]]]\"")
    assert parse_code(program, strict=True).canvas.global_description.tags == "(" * 100 + "[['[[]]]"


@pytest.mark.parametrize(
    "expression",
    ["-" * 100_000 + "1", "1" + "+1" * 100_000, "a" + ".b" * 100_000, "not " * 50_000 + "x"],
)
def test_deep_expressions_are_errors_not_crashes(expression: str) -> None:
    with pytest.raises(CanvasCodeError):
        parse_code(GLOBAL.replace("tags='t'", f"tags={expression}"))


def test_ten_megabyte_string_is_refused_by_size() -> None:
    program = GLOBAL.replace("tags='t'", "tags='" + "x" * 10_000_000 + "'")
    with pytest.raises(CanvasCodeError, match="characters") as caught:
        parse_code(program)
    assert str(MAX_CODE_CHARS) in caught.value.message


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("'" + "x" * 300_000 + "'", "at most 1000 characters"),
        ("1" * 5000, "not valid Python"),
        ("[" + "'a'," * 50_000 + "]", "at most 16 strings"),
        ("b'bytes'", "expected a string"),
        ("1j", "expected a string"),
        ("'\\x00'", "tags"),
    ],
)
def test_huge_or_odd_literals_are_refused(value: str, words: str) -> None:
    with pytest.raises(CanvasCodeError) as caught:
        parse_code(GLOBAL.replace("tags='t'", f"tags={value}"))
    assert words in caught.value.message


def test_null_byte_in_code_is_an_error() -> None:
    with pytest.raises(CanvasCodeError, match="null"):
        parse_code(GLOBAL + "\x00")
