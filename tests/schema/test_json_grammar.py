"""The EBNF grammar of canvas JSON: a subset of the JSON schema, in ``model_dump_json``'s form."""

from __future__ import annotations

import json
import random
import re

import jsonschema
import pytest
import xgrammar as xgr
from byte_matching import accepts, byte_compiler, random_walk, restrict
from hypothesis import given, settings
from omost_schema import Canvas, CanvasBudget, canvas_json_grammar, canvas_json_schema
from omost_schema.limits import MAX_LOCAL_DESCRIPTIONS, MAX_TAGS_CHARS, MAX_TEXT_CHARS
from strategies import canvases


@pytest.fixture(scope="module")
def compiled() -> xgr.CompiledGrammar:
    return byte_compiler().compile_grammar(xgr.Grammar.from_ebnf(canvas_json_grammar()))


def _json_char(char: str) -> bool:
    # JSON strings without escapes: printable text, no quote or backslash.
    return char.isprintable() and char not in '"\\'


def test_dragon_canvas_json_is_accepted(compiled: xgr.CompiledGrammar, dragon: Canvas) -> None:
    assert accepts(compiled, dragon.model_dump_json())


@settings(max_examples=40, deadline=None)
@given(canvases())
def test_random_canvases_as_compact_json_are_accepted(
    compiled: xgr.CompiledGrammar, canvas: Canvas
) -> None:
    assert accepts(compiled, restrict(canvas, _json_char).model_dump_json())


def _edit(dragon: Canvas, path: tuple[str | int, ...], value: object) -> str:
    data = json.loads(dragon.model_dump_json())
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("global_description", "description"), "x" * (MAX_TEXT_CHARS + 1)),
        (("global_description", "tags"), "t" * (MAX_TAGS_CHARS + 1)),
        (("global_description", "description"), 'a "quoted" word'),
        (("global_description", "description"), "back\\slash"),
        (("global_description", "description"), "tab\there"),
        (("global_description", "HTML_web_color_name"), "fire brick"),
        (("global_description", "detailed_descriptions"), ["d"] * 17),
        (("local_descriptions", 0, "distance_to_viewer"), 0),
        (("local_descriptions", 0, "distance_to_viewer"), 1000000.5),
        (("local_descriptions", 0, "distance_to_viewer"), -3.0),
        (("local_descriptions", 0, "area"), "a huge area"),
    ],
    ids=[
        "over-long text",
        "over-long tags",
        "escaped quote",
        "backslash",
        "control character",
        "unknown colour",
        "too many details",
        "zero distance",
        "distance too far",
        "negative distance",
        "unknown area",
    ],
)
def test_invalid_values_are_rejected(
    compiled: xgr.CompiledGrammar, dragon: Canvas, path: tuple[str | int, ...], value: object
) -> None:
    assert not accepts(compiled, _edit(dragon, path, value))


def test_layout_other_than_compact_and_in_order_is_rejected(
    compiled: xgr.CompiledGrammar, dragon: Canvas
) -> None:
    compact = dragon.model_dump_json()
    assert not accepts(compiled, json.dumps(json.loads(compact), indent=1))
    reordered = json.loads(compact)
    reordered = {"local_descriptions": reordered["local_descriptions"], **reordered}
    assert not accepts(compiled, json.dumps(reordered, separators=(",", ":")))
    too_many = json.loads(compact)
    too_many["local_descriptions"] *= MAX_LOCAL_DESCRIPTIONS
    assert not accepts(compiled, json.dumps(too_many, separators=(",", ":")))


def test_everything_the_grammar_writes_is_valid_under_the_schema(
    compiled: xgr.CompiledGrammar,
) -> None:
    rng = random.Random(7)
    written = [random_walk(compiled, rng, max_steps=8000) for _ in range(12)]
    finished = [text for text in written if text is not None]
    assert len(finished) >= 10
    schema = canvas_json_schema()
    for text in finished:
        jsonschema.validate(json.loads(text), schema)
        Canvas.model_validate_json(text)


def test_long_repetitions_are_inline_character_classes() -> None:
    # As in the code grammar: a class repeat inside a larger rule keeps masks cheap at any length.
    grammar = canvas_json_grammar()
    long_repeats = [i for i, n in re.findall(r"(\S+)\{0,(\d+)\}", grammar) if int(n) > 24]
    assert len(long_repeats) == 2
    assert all(item.startswith("[") and item.endswith("]") for item in long_repeats)


def test_budget_bounds_the_json_grammar_and_schema_alike() -> None:
    budget = CanvasBudget(max_locals=1, max_detailed_descriptions=1, max_chars=40)
    compiled = byte_compiler().compile_grammar(xgr.Grammar.from_ebnf(canvas_json_grammar(budget)))
    schema = canvas_json_schema(budget)
    text = "A" * 40
    region = {"description": text, "detailed_descriptions": [text], "tags": "t"}
    local = {
        "location": "in the center",
        "offset": "no offset",
        "area": "a small square area",
        "distance_to_viewer": 1.0,
        **region,
        "atmosphere": "",
        "style": "",
        "quality_meta": "",
        "HTML_web_color_name": "red",
    }
    fits = Canvas.model_validate(
        {
            "global_description": {**region, "HTML_web_color_name": "red"},
            "local_descriptions": [local],
        }
    )
    assert accepts(compiled, fits.model_dump_json())
    jsonschema.validate(json.loads(fits.model_dump_json()), schema)
    for over in (
        fits.model_copy(update={"local_descriptions": fits.local_descriptions * 2}),
        Canvas.model_validate_json(fits.model_dump_json().replace(text, text + "A", 1)),
        Canvas.model_validate_json(
            fits.model_dump_json().replace(f'["{text}"]', f'["{text}","b"]', 1)
        ),
    ):
        assert not accepts(compiled, over.model_dump_json())
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(json.loads(over.model_dump_json()), schema)
