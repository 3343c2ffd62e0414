r"""JSON Schema of a canvas, for constrained decoding of canvas JSON.

The schema is a strict subset of ``Canvas``: every document it accepts validates as a canvas. It
keeps to the part of JSON Schema that xgrammar, llguidance and OpenAI's strict structured outputs
all accept:

- every object has ``additionalProperties: false`` and lists every property in ``required``, in
  Omost's argument order (decoders emit properties in the order of ``properties``);
- the vocabulary is ``enum``; shared pieces are ``$defs`` (no recursion);
- strings are bounded by ``pattern`` alone. A character class that excludes ``"``, ``\`` and
  control characters makes the raw JSON text of a string equal to its value, so a decoder that
  matches the pattern against raw text (xgrammar does) needs no escapes and cannot be led into
  writing ``\n``. ``maxLength`` is not used: xgrammar bounds it with a class that lets tabs and
  NULs through, and next to a pattern it would only add work;
- arrays are bounded by ``minItems``/``maxItems`` and ``distance_to_viewer`` by
  ``exclusiveMinimum``/``maximum``. OpenAI's strict mode documents both pairs as supported (for
  models that are not fine-tuned). xgrammar turns a bounded ``number`` into a finite pattern (at
  most 7 integer digits, 6 decimals, no exponent), so a model cannot write endless digits there.

Caveats worth knowing when validating with other tools:

- Python's ``re`` (used by the ``jsonschema`` package) lets ``$`` match before one final
  ``"\n"``, so such a validator accepts a string ending in a newline, which ``Canvas`` refuses.
  Under JSON Schema's own (ECMA-262) semantics and in the decoders, ``$`` is the end of the text.
- With xgrammar's default ``any_whitespace`` the whitespace between JSON tokens is unbounded;
  serve with it disabled (vLLM: ``disable_any_whitespace``) or bounded.
- xgrammar converts a bounded ``pattern`` in time that grows with the square of the bound (about
  0.1 s for 500 characters, 0.5 s for 1000); ``$defs`` keep that to once per definition, and
  vLLM caches the compiled grammar.
"""

from typing import Any

from omost_schema.limits import FULL_BUDGET, MAX_DISTANCE_TO_VIEWER, CanvasBudget
from omost_schema.vocab import AREAS, COLOR_NAMES, LOCATIONS, OFFSETS

# One string character: anything but a quote, a backslash or a control character (the set
# ``Canvas`` refuses). The regex is ECMA-262 (JSON Schema's dialect); Python reads it the same.
_TEXT_CHAR = '[^"\\\\\\x00-\\x1f\\x7f]'

# Shared pieces live in ``$defs``: xgrammar converts a ``pattern`` once per definition, and the
# conversion of a bounded pattern costs time quadratic in the bound (see the module docstring).
_TEXT = {"$ref": "#/$defs/text"}
_TAGS = {"$ref": "#/$defs/tags"}
_COLOR_NAME = {"$ref": "#/$defs/color_name"}
_DETAILED_DESCRIPTIONS = {"$ref": "#/$defs/detailed_descriptions"}


def _pattern(max_chars: int, description: str) -> dict[str, Any]:
    return {
        "type": "string",
        "description": description,
        "pattern": f"^{_TEXT_CHAR}{{0,{max_chars}}}$",
    }


def _enum(values: tuple[str, ...], description: str) -> dict[str, Any]:
    return {"type": "string", "description": description, "enum": list(values)}


def _array(items: dict[str, Any], max_items: int, description: str) -> dict[str, Any]:
    return {
        "type": "array",
        "description": description,
        "items": items,
        "minItems": 0,
        "maxItems": max_items,
    }


def _object(properties: dict[str, dict[str, Any]], description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _global_description() -> dict[str, Any]:
    return _object(
        {
            "description": dict(_TEXT),
            "detailed_descriptions": dict(_DETAILED_DESCRIPTIONS),
            "tags": dict(_TAGS),
            "HTML_web_color_name": dict(_COLOR_NAME),
        },
        "Canvas.set_global_description(...): the whole image.",
    )


def _local_description() -> dict[str, Any]:
    return _object(
        {
            "location": _enum(LOCATIONS, "Where the part is, on a 3x3 grid."),
            "offset": _enum(OFFSETS, "A small shift of the location."),
            "area": _enum(AREAS, "Size and shape of the part's bounding box."),
            "distance_to_viewer": {
                "type": "number",
                "description": "Distance from the viewer; farther parts are drawn first.",
                "exclusiveMinimum": 0,
                "maximum": MAX_DISTANCE_TO_VIEWER,
            },
            "description": dict(_TEXT),
            "detailed_descriptions": dict(_DETAILED_DESCRIPTIONS),
            "tags": dict(_TAGS),
            "atmosphere": dict(_TEXT),
            "style": dict(_TEXT),
            "quality_meta": dict(_TEXT),
            "HTML_web_color_name": dict(_COLOR_NAME),
        },
        "Canvas.add_local_description(...): one part of the image.",
    )


def _definitions(budget: CanvasBudget) -> dict[str, dict[str, Any]]:
    return {
        "text": _pattern(budget.max_chars, "A sub-prompt: one sentence or phrase."),
        "tags": _pattern(budget.max_tags_chars, "Comma-separated keywords."),
        "color_name": _enum(COLOR_NAMES, "The dominant colour, an HTML colour name."),
        "detailed_descriptions": _array(
            dict(_TEXT),
            budget.max_detailed_descriptions,
            "Detailed sentences, one sub-prompt each.",
        ),
        "local_description": _local_description(),
    }


def canvas_json_schema(budget: CanvasBudget = FULL_BUDGET) -> dict[str, Any]:
    r"""Return a JSON Schema of a canvas for constrained decoding (a fresh dict on every call).

    The schema accepts a subset of what ``Canvas`` validates: strings hold no ``"``, ``\`` or
    control characters, and every limit of ``omost_schema.limits`` is enforced, within the
    bounds of ``budget``. It compiles with xgrammar and llguidance and meets OpenAI's strict
    structured-output rules.

    Args:
        budget: Most locals, detailed descriptions per region and characters per string.

    Returns:
        The schema of ``{"global_description": {...}, "local_descriptions": [...]}``.
    """
    return {
        "title": "Canvas",
        **_object(
            {
                "global_description": _global_description(),
                "local_descriptions": _array(
                    {"$ref": "#/$defs/local_description"},
                    budget.max_locals,
                    "The parts of the image, in the order of the program.",
                ),
            },
            "An Omost canvas: one global description and its local descriptions.",
        ),
        "$defs": _definitions(budget),
    }
