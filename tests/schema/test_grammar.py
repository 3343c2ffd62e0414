"""The EBNF grammar of Omost code: it compiles, matches what Omost writes, and parses strictly."""

from __future__ import annotations

import random
import re

import llguidance
import llguidance.gbnf_to_lark
import pytest
import xgrammar as xgr
from byte_matching import accepts, byte_compiler, random_walk, restrict
from hypothesis import given, settings
from omost_schema import COMPACT_BUDGET, Canvas, CanvasBudget, canvas_grammar, parse_code
from omost_schema.grammar import MAX_GRAMMAR_STRING_CHARS, MAX_SPACE_CHARS
from omost_schema.limits import MAX_LOCAL_DESCRIPTIONS, MAX_TAGS_CHARS, MAX_TEXT_CHARS
from strategies import canvases

_LOCAL = """
# Add a mighty dinosaur.
canvas.add_local_description(
    location='in the center',
    offset='no offset',
    area='a large square area',
    distance_to_viewer=7.0,
    description='A mighty dinosaur.',
    detailed_descriptions=[
        "The dinosaur's eyes burn with a fierce intensity.",
    ],
    tags='dinosaur, massive',
    atmosphere='Intense and menacing.',
    style='Epic and dramatic.',
    quality_meta='High resolution.',
    HTML_web_color_name='firebrick',
)
"""
_PROGRAM = (
    """# Initialize the canvas
canvas = Canvas()

# Set a global description for the canvas
canvas.set_global_description(
    description='A fierce battle between warriors and a dinosaur.',
    detailed_descriptions=[
        'In this intense scene, a group of fierce warriors is engaged in an epic battle.',
    ],
    tags='battle, warriors, dinosaur',
    HTML_web_color_name='darkslategray',
)
"""
    + _LOCAL
)


def _compile(grammar: str) -> xgr.CompiledGrammar:
    return byte_compiler().compile_grammar(xgr.Grammar.from_ebnf(grammar))


@pytest.fixture(scope="module")
def compiled() -> xgr.CompiledGrammar:
    return _compile(canvas_grammar())


def _parses_strictly(code: str) -> Canvas:
    return parse_code(code, strict=True).canvas


def _code_char(char: str) -> bool:
    # The grammar's strings hold printable text without backslashes, in the quotes that need no
    # escape; repr() picks those quotes when a text holds one quote kind.
    return char.isprintable() and char not in '\\"'


def test_grammar_is_a_string_with_root_rule() -> None:
    grammar = canvas_grammar()
    assert isinstance(grammar, str)
    assert grammar.startswith("root ::= ")
    assert canvas_grammar() == grammar


@pytest.mark.parametrize("fenced", [False, True])
def test_grammar_converts_to_llguidance_lark(fenced: bool) -> None:
    lark = llguidance.gbnf_to_lark.gbnf_to_lark(canvas_grammar(fenced=fenced))
    grammar = llguidance.grammar_from("lark", lark)
    assert llguidance.LLMatcher.validate_grammar_with_warnings(grammar) == (False, [])


def test_budget_outside_the_canvas_limits_is_refused() -> None:
    with pytest.raises(ValueError, match="max_locals"):
        CanvasBudget(max_locals=MAX_LOCAL_DESCRIPTIONS + 1)
    with pytest.raises(ValueError, match="max_locals"):
        CanvasBudget(max_locals=-1)
    with pytest.raises(ValueError, match="max_chars"):
        CanvasBudget(max_chars=MAX_TEXT_CHARS + 1)
    with pytest.raises(ValueError, match="max_detailed_descriptions"):
        CanvasBudget(max_detailed_descriptions=0)


def test_no_rule_repeats_without_bound() -> None:
    grammar = canvas_grammar()
    assert not re.search(r"[*+]", grammar.replace('"', "'").split("location_name")[0])
    assert "{0,-1}" not in grammar.replace(" ", "")


def test_long_repetitions_are_inline_character_classes() -> None:
    # A long repeat of a rule with alternatives keeps one parser state per possible count (token
    # masks took seconds per token deep in a description), and a repeat that is a rule of its own
    # compiles in seconds: every long repeat is a bare character class inside a larger rule.
    grammar = canvas_grammar()
    repeats = [(item, int(bound)) for item, bound in re.findall(r"(\S+)\{0,(\d+)\}", grammar)]
    long_repeats = [item for item, bound in repeats if bound > MAX_SPACE_CHARS]
    assert len(long_repeats) == 3  # comments, single- and double-quoted strings
    assert all(item.startswith("[") and item.endswith("]") for item in long_repeats)
    rules = re.findall(r"^\w+ ::= (.*)$", grammar, re.MULTILINE)
    lone = [re.fullmatch(r"\[.*\]\{0,(\d+)\}", body) for body in rules]
    assert not any(m and int(m[1]) > MAX_SPACE_CHARS for m in lone)


def test_strings_are_bounded_within_both_canvas_limits() -> None:
    assert min(MAX_TEXT_CHARS, MAX_TAGS_CHARS) >= MAX_GRAMMAR_STRING_CHARS
    assert f"{{0,{MAX_GRAMMAR_STRING_CHARS}}}" in canvas_grammar()


def test_sample_program_is_accepted(compiled: xgr.CompiledGrammar) -> None:
    assert accepts(compiled, _PROGRAM)
    assert _parses_strictly(_PROGRAM).local_descriptions[0].location == "in the center"


def test_dragon_transcript_is_accepted(compiled: xgr.CompiledGrammar, dragon_code: str) -> None:
    assert accepts(compiled, dragon_code)


def test_fenced_grammar_accepts_a_fenced_answer() -> None:
    compiled = _compile(canvas_grammar(fenced=True))
    answer = f"```python\n{_PROGRAM}```"
    assert accepts(compiled, answer)
    assert not accepts(compiled, _PROGRAM)
    assert _parses_strictly(answer).global_description.HTML_web_color_name == "darkslategray"


def test_max_locals_bounds_the_local_calls() -> None:
    compiled = _compile(canvas_grammar(budget=CanvasBudget(max_locals=1)))
    assert accepts(compiled, _PROGRAM)
    assert not accepts(compiled, _PROGRAM + _LOCAL)


def test_budget_bounds_detailed_descriptions_and_strings() -> None:
    # _PROGRAM's longest string has 79 characters and each region one detailed description.
    assert accepts(_compile(canvas_grammar(budget=CanvasBudget(max_chars=79))), _PROGRAM)
    assert not accepts(_compile(canvas_grammar(budget=CanvasBudget(max_chars=78))), _PROGRAM)
    assert not accepts(_compile(canvas_grammar(budget=CanvasBudget(max_tags_chars=78))), _PROGRAM)
    two = _PROGRAM.replace('fierce intensity.",\n', 'fierce intensity.",\n        "Smoke.",\n')
    one_detailed = _compile(canvas_grammar(budget=CanvasBudget(max_detailed_descriptions=1)))
    assert accepts(one_detailed, _PROGRAM)
    assert not accepts(one_detailed, two)
    assert accepts(_compile(canvas_grammar()), two)


def test_compact_budget_walks_parse_within_the_budget() -> None:
    compiled = _compile(canvas_grammar(budget=COMPACT_BUDGET))
    rng = random.Random(3)
    for _ in range(6):
        text = random_walk(compiled, rng, max_steps=6000)
        if text is None:
            continue
        canvas = parse_code(text, strict=True).canvas
        assert len(canvas.local_descriptions) <= COMPACT_BUDGET.max_locals
        regions = [canvas.global_description, *canvas.local_descriptions]
        assert all(
            len(r.detailed_descriptions) <= COMPACT_BUDGET.max_detailed_descriptions
            for r in regions
        )
        assert all(len(r.description) <= COMPACT_BUDGET.max_chars for r in regions)


@pytest.mark.parametrize(
    "variant",
    [
        _PROGRAM.replace("'no offset'", '"no offset"'),
        _PROGRAM.replace("'A mighty dinosaur.'", '"A mighty dinosaur\'s roar."'),
        _PROGRAM.replace("'A mighty dinosaur.'", "'A \"mighty\" dinosaur.'"),
        _PROGRAM.replace(",\n)", "\n)"),
        _PROGRAM.replace('detailed_descriptions=[\n        "The', 'detailed_descriptions=["The'),
        _PROGRAM.replace("7.0", "0.0005").replace("distance_to_viewer=", "distance_to_viewer = "),
        _PROGRAM.replace("7.0", "1000000.0"),
        _PROGRAM.replace("7.0", "123456.7891"),
        _PROGRAM.replace("A mighty dinosaur.", "Un dragón 🐉 — 龍"),
        _PROGRAM.rstrip("\n"),
        "\n# Omost canvas\n\n" + _PROGRAM + "\n",
        _PROGRAM.replace("'A mighty dinosaur.'", "'" + "d" * MAX_GRAMMAR_STRING_CHARS + "'"),
    ],
    ids=[
        "double quotes",
        "apostrophe in double quotes",
        "double quotes in single quotes",
        "no trailing comma",
        "list on one line",
        "small distance",
        "largest distance",
        "four decimals",
        "unicode",
        "no final newline",
        "extra comments and blank lines",
        "longest string",
    ],
)
def test_variants_omost_may_write_are_accepted(compiled: xgr.CompiledGrammar, variant: str) -> None:
    assert variant != _PROGRAM
    assert accepts(compiled, variant)
    _parses_strictly(variant)


_BROKEN = {
    "missing global call": _PROGRAM.replace("set_global_description", "add_global_description"),
    "no global call": _PROGRAM.split("# Set a global")[0] + _LOCAL,
    "no canvas constructor": _PROGRAM.replace("canvas = Canvas()\n", ""),
    "unknown area": _PROGRAM.replace("a large square area", "a huge square area"),
    "unknown colour": _PROGRAM.replace("'firebrick'", "'fire brick'"),
    "import line": "import os\n" + _PROGRAM,
    "too many locals": _PROGRAM + _LOCAL * MAX_LOCAL_DESCRIPTIONS,
    "over-long string": _PROGRAM.replace("A mighty dinosaur.", "d" * (MAX_TEXT_CHARS + 1)),
    "over-long tags": _PROGRAM.replace("dinosaur, massive", "t" * (MAX_GRAMMAR_STRING_CHARS + 1)),
    "positional argument": _PROGRAM.replace("location='in the center'", "'in the center'"),
    "arguments out of order": _PROGRAM.replace(
        "    location='in the center',\n    offset='no offset',\n",
        "    offset='no offset',\n    location='in the center',\n",
    ),
    "unescaped quote": _PROGRAM.replace("'A mighty dinosaur.'", "'A mighty dinosaur's.'"),
    "escaped quote": _PROGRAM.replace("'A mighty dinosaur.'", "'A dinosaur\\'s roar.'"),
    "backslash": _PROGRAM.replace("A mighty dinosaur.", "A mighty \\\\ dinosaur."),
    "newline escape": _PROGRAM.replace("A mighty dinosaur.", "A mighty\\ndinosaur."),
    "raw tab in string": _PROGRAM.replace("A mighty dinosaur.", "A mighty\tdinosaur."),
    "integer distance": _PROGRAM.replace("7.0", "7"),
    "zero distance": _PROGRAM.replace("7.0", "0.0"),
    "distance too far": _PROGRAM.replace("7.0", "1000000.5"),
    "endless digits": _PROGRAM.replace("7.0", "7." + "0" * 40),
    "exponent": _PROGRAM.replace("7.0", "7e0"),
    "indented statement": _PROGRAM.replace("\ncanvas.add_local", "\n    canvas.add_local"),
    "over-long comment": _PROGRAM.replace("# Add a mighty", "# " + "c" * 700),
    "too many blank lines": _PROGRAM.replace("\n\n# Add", "\n\n\n\n\n\n\n# Add"),
    "too much whitespace": _PROGRAM.replace("(\n    location", "(\n" + " " * 40 + "location"),
    "code after the program": _PROGRAM + "print(canvas)\n",
    "triple-quoted string": _PROGRAM.replace("'Epic and dramatic.'", "'''Epic.'''"),
    "string prefix": _PROGRAM.replace("'Epic and dramatic.'", "f'Epic.'"),
}


@pytest.mark.parametrize("breakage", list(_BROKEN), ids=list(_BROKEN))
def test_broken_programs_are_rejected(compiled: xgr.CompiledGrammar, breakage: str) -> None:
    assert _BROKEN[breakage] != _PROGRAM
    assert not accepts(compiled, _BROKEN[breakage])


@settings(max_examples=40, deadline=None)
@given(canvases())
def test_printed_random_canvases_are_accepted(
    compiled: xgr.CompiledGrammar, canvas: Canvas
) -> None:
    code = restrict(canvas, _code_char).to_code()
    assert accepts(compiled, code)


def test_programs_sampled_from_the_grammar_parse_strictly(compiled: xgr.CompiledGrammar) -> None:
    rng = random.Random(1234)
    programs = [random_walk(compiled, rng, max_steps=8000) for _ in range(12)]
    finished = [program for program in programs if program is not None]
    assert len(finished) >= 10
    canvases_ = [_parses_strictly(program) for program in finished]
    assert any(canvas.local_descriptions for canvas in canvases_)
    for program, canvas in zip(finished, canvases_, strict=True):
        calls = re.findall(r"^canvas\.add_local_description\(", program, re.MULTILINE)
        assert len(canvas.local_descriptions) == len(calls)
