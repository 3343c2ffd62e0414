"""The canvas JSON schema: its shape, xgrammar's and jsonschema's verdicts, and Canvas subset."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import llguidance
import pytest
import xgrammar as xgr
from byte_matching import accepts, byte_compiler, random_walk, restrict
from hypothesis import given, settings
from omost_schema import (
    AREAS,
    COLOR_NAMES,
    LOCATIONS,
    OFFSETS,
    Canvas,
    GlobalDescription,
    LocalDescription,
    canvas_json_schema,
)
from omost_schema.limits import (
    MAX_DETAILED_DESCRIPTIONS,
    MAX_DISTANCE_TO_VIEWER,
    MAX_LOCAL_DESCRIPTIONS,
    MAX_TAGS_CHARS,
    MAX_TEXT_CHARS,
)
from strategies import canvases

Document = dict[str, Any]


def _compact(document: Document) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


@pytest.fixture(scope="module")
def compiled() -> xgr.CompiledGrammar:
    """The schema as vLLM compiles it with whitespace disabled: compact JSON only."""
    grammar = xgr.Grammar.from_json_schema(
        json.dumps(canvas_json_schema()), any_whitespace=False, separators=(",", ":")
    )
    return byte_compiler().compile_grammar(grammar)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(canvas_json_schema())


def _subschemas(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _subschemas(value)
    elif isinstance(node, list):
        for value in node:
            yield from _subschemas(value)


def _resolve(schema: Document, node: Document) -> Document:
    ref = node.get("$ref")
    if ref is None:
        return node
    return schema["$defs"][ref.removeprefix("#/$defs/")]  # type: ignore[no-any-return]


def _local(**changes: Any) -> Document:
    local: Document = {
        "location": "on the left",
        "offset": "no offset",
        "area": "a large horizontal area",
        "distance_to_viewer": 5.0,
        "description": "A group of fierce warriors.",
        "detailed_descriptions": ["They are armed with swords."],
        "tags": "warriors, armor",
        "atmosphere": "Determined.",
        "style": "Highly detailed.",
        "quality_meta": "High resolution.",
        "HTML_web_color_name": "darkgoldenrod",
    }
    return local | changes


def _document(*locals_: Document, **global_changes: Any) -> Document:
    global_description: Document = {
        "description": "A fierce battle between warriors and a dinosaur.",
        "detailed_descriptions": ["In this intense scene, warriors fight."],
        "tags": "battle, warriors, dinosaur",
        "HTML_web_color_name": "darkslategray",
    }
    return {
        "global_description": global_description | global_changes,
        "local_descriptions": list(locals_),
    }


def _largest_document() -> Document:
    detailed = ["d" * MAX_TEXT_CHARS] * MAX_DETAILED_DESCRIPTIONS
    local = _local(
        description="x" * MAX_TEXT_CHARS,
        tags="t" * MAX_TAGS_CHARS,
        detailed_descriptions=detailed,
        distance_to_viewer=MAX_DISTANCE_TO_VIEWER,
    )
    return _document(*[local] * MAX_LOCAL_DESCRIPTIONS, detailed_descriptions=detailed)


def test_schema_is_a_fresh_object_on_every_call() -> None:
    first = canvas_json_schema()
    first["properties"].clear()
    first["$defs"]["color_name"]["enum"].append("ultraviolet")
    assert canvas_json_schema()["properties"]
    assert "ultraviolet" not in canvas_json_schema()["$defs"]["color_name"]["enum"]


def test_schema_is_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(canvas_json_schema())


def test_schema_is_accepted_by_llguidance_without_warnings() -> None:
    def check(schema: Document) -> tuple[bool, list[str]]:
        grammar = llguidance.grammar_from("json_schema", json.dumps(schema))
        return llguidance.LLMatcher.validate_grammar_with_warnings(grammar)

    assert check(canvas_json_schema()) == (False, [])
    assert check({"type": "object", "propertyNames": {"pattern": "^a$"}, "uniqueItems": True})[1]


def test_properties_follow_omost_argument_order() -> None:
    schema = canvas_json_schema()
    global_schema = schema["properties"]["global_description"]
    local_schema = schema["$defs"]["local_description"]
    assert list(schema["properties"]) == list(Canvas.model_fields)
    assert list(global_schema["properties"]) == list(GlobalDescription.model_fields)
    assert list(local_schema["properties"]) == list(LocalDescription.model_fields)


def test_every_object_is_closed_and_requires_every_property() -> None:
    objects = [node for node in _subschemas(canvas_json_schema()) if node.get("type") == "object"]
    assert len(objects) == 3
    for node in objects:
        assert node["additionalProperties"] is False
        assert node["required"] == list(node["properties"])


def test_schema_keeps_to_the_portable_subset() -> None:
    schema = canvas_json_schema()
    for node in _subschemas(schema):
        assert not {"maxLength", "minLength", "uniqueItems", "format"} & node.keys()
        if node.get("type") == "string" and "enum" not in node:
            assert node["pattern"].startswith("^[^")
        if node.get("type") == "array":
            assert node["minItems"] == 0
            assert isinstance(node["maxItems"], int)
    # References only point into $defs, and no definition refers to itself (no recursion).
    for name, definition in schema["$defs"].items():
        refs = {n["$ref"] for n in _subschemas(definition) if "$ref" in n}
        assert f"#/$defs/{name}" not in refs
        assert all(ref.removeprefix("#/$defs/") in schema["$defs"] for ref in refs)


def test_enums_are_the_vocabulary() -> None:
    schema = canvas_json_schema()
    local = schema["$defs"]["local_description"]["properties"]
    assert local["location"]["enum"] == list(LOCATIONS)
    assert local["offset"]["enum"] == list(OFFSETS)
    assert local["area"]["enum"] == list(AREAS)
    assert _resolve(schema, local["HTML_web_color_name"])["enum"] == list(COLOR_NAMES)


def test_schema_compiles_with_default_whitespace_and_accepts_indented_json() -> None:
    grammar = xgr.Grammar.from_json_schema(json.dumps(canvas_json_schema()))
    compiled = byte_compiler().compile_grammar(grammar)
    assert accepts(compiled, json.dumps(_document(_local()), indent=2))


def test_seed_like_document_is_accepted(
    compiled: xgr.CompiledGrammar, validator: jsonschema.Draft202012Validator
) -> None:
    document = _document(_local(), _local(location="in the center", distance_to_viewer=7.0))
    assert accepts(compiled, _compact(document))
    validator.validate(document)
    Canvas.model_validate(document)


def test_largest_document_within_limits_is_accepted(
    compiled: xgr.CompiledGrammar, validator: jsonschema.Draft202012Validator
) -> None:
    document = _largest_document()
    assert accepts(compiled, _compact(document))
    validator.validate(document)
    Canvas.model_validate(document)


def _json_char(char: str) -> bool:
    # The schema's strings hold anything but quotes, backslashes and control characters.
    return char not in '"\\'


@settings(max_examples=40, deadline=None)
@given(canvases())
def test_random_canvases_are_accepted(
    compiled: xgr.CompiledGrammar, validator: jsonschema.Draft202012Validator, canvas: Canvas
) -> None:
    document = restrict(canvas, _json_char).model_dump(mode="json")
    assert accepts(compiled, _compact(document))
    validator.validate(document)


def _mutation(path: list[Any], value: Any) -> Callable[[Document], None]:
    def mutate(document: Document) -> None:
        node = document
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _drop(path: list[Any]) -> Callable[[Document], None]:
    def mutate(document: Document) -> None:
        node = document
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


_LOCAL: list[Any] = ["local_descriptions", 0]
_BROKEN: dict[str, Callable[[Document], None]] = {
    "too many locals": _mutation(["local_descriptions"], [_local()] * (MAX_LOCAL_DESCRIPTIONS + 1)),
    "too many detailed": _mutation(
        ["global_description", "detailed_descriptions"], ["x"] * (MAX_DETAILED_DESCRIPTIONS + 1)
    ),
    "too long text": _mutation([*_LOCAL, "style"], "s" * (MAX_TEXT_CHARS + 1)),
    "too long tags": _mutation(["global_description", "tags"], "t" * (MAX_TAGS_CHARS + 1)),
    "control char": _mutation([*_LOCAL, "description"], "a\tb"),
    "delete char": _mutation([*_LOCAL, "description"], "a\x7fb"),
    "quote in text": _mutation([*_LOCAL, "description"], 'a "b"'),
    "unknown colour": _mutation([*_LOCAL, "HTML_web_color_name"], "ultraviolet"),
    "near-miss location": _mutation([*_LOCAL, "location"], "on the left side"),
    "extra property": _mutation([*_LOCAL, "mood"], "calm"),
    "extra top-level property": _mutation(["version"], 1),
    "negative distance": _mutation([*_LOCAL, "distance_to_viewer"], -1.0),
    "zero distance": _mutation([*_LOCAL, "distance_to_viewer"], 0.0),
    "distance too far": _mutation([*_LOCAL, "distance_to_viewer"], MAX_DISTANCE_TO_VIEWER * 2),
    "distance as text": _mutation([*_LOCAL, "distance_to_viewer"], "5.0"),
    "missing property": _drop([*_LOCAL, "atmosphere"]),
    "missing global": _drop(["global_description"]),
    "missing locals": _drop(["local_descriptions"]),
}


@pytest.mark.parametrize("breakage", list(_BROKEN), ids=list(_BROKEN))
def test_broken_documents_are_rejected(
    compiled: xgr.CompiledGrammar, validator: jsonschema.Draft202012Validator, breakage: str
) -> None:
    document = _document(_local())
    _BROKEN[breakage](document)
    assert not accepts(compiled, _compact(document))
    assert not validator.is_valid(document)


def test_properties_out_of_order_are_rejected(compiled: xgr.CompiledGrammar) -> None:
    local = _local()
    reordered = {"offset": local.pop("offset"), **local}
    assert not accepts(compiled, _compact(_document(reordered)))


def test_distance_with_endless_digits_is_rejected(compiled: xgr.CompiledGrammar) -> None:
    text = _compact(_document(_local()))
    assert not accepts(
        compiled, text.replace('"distance_to_viewer":5.0', '"distance_to_viewer":5.0' + "1" * 40)
    )
    assert not accepts(
        compiled, text.replace('"distance_to_viewer":5.0', '"distance_to_viewer":5e0')
    )


def test_documents_sampled_from_the_schema_are_canvases(
    compiled: xgr.CompiledGrammar, validator: jsonschema.Draft202012Validator
) -> None:
    rng = random.Random(20240611)
    walks = [random_walk(compiled, rng, max_steps=6000) for _ in range(12)]
    documents = [json.loads(text) for text in walks if text is not None]
    assert len(documents) >= 10
    assert any(document["local_descriptions"] for document in documents)
    for document in documents:
        validator.validate(document)
        canvas = Canvas.model_validate(document)
        assert canvas.model_dump(mode="json") == document
