"""EBNF grammar of a canvas's compact JSON, for in-process constrained decoding with xgrammar.

It matches a subset of what ``canvas_json_schema()`` accepts, in the form
``Canvas.model_dump_json()`` writes: compact separators, every key in the model's order, strings
without escapes. Servers that take a JSON schema (vLLM's ``response_format``, hosted APIs) get the
schema; an engine that compiles a grammar gets this, because xgrammar turns the schema's string
patterns into regular-expression rules whose token masks cost about 70 ms per token on the
Llama-3 vocabulary, while the same bound as an inline character-class repeat costs a fraction of a
millisecond (``docs/benchmarks.md``).
"""

from functools import lru_cache

from omost_schema.limits import (
    MAX_DETAILED_DESCRIPTIONS,
    MAX_DISTANCE_TO_VIEWER,
    MAX_LOCAL_DESCRIPTIONS,
    MAX_TAGS_CHARS,
    MAX_TEXT_CHARS,
)
from omost_schema.vocab import AREAS, COLOR_NAMES, LOCATIONS, OFFSETS

# JSON strings without escapes: no quote, backslash or control character (C0, DEL, C1) and no
# Unicode line separators, as the schema's patterns and the code grammar also refuse.
_STRING_CHAR = r'[^"\\\x00-\x1f\x7f-\x9f\u2028\u2029]'

# Each object's keys in the model's order, with the rule of their value.
_GLOBAL_FIELDS = (
    ("description", "text"),
    ("detailed_descriptions", "texts"),
    ("tags", "tags"),
    ("HTML_web_color_name", "color"),
)
_LOCAL_FIELDS = (
    ("location", "location"),
    ("offset", "offset"),
    ("area", "area"),
    ("distance_to_viewer", "distance"),
    ("description", "text"),
    ("detailed_descriptions", "texts"),
    ("tags", "tags"),
    ("atmosphere", "text"),
    ("style", "text"),
    ("quality_meta", "text"),
    ("HTML_web_color_name", "color"),
)


def _object(rule: str, fields: tuple[tuple[str, str], ...]) -> str:
    members = ' "," '.join(f'"\\"{name}\\":" {value}' for name, value in fields)
    return f'{rule} ::= "{{" {members} "}}"\n'


def _enum(rule: str, names: tuple[str, ...]) -> str:
    alternatives = " | ".join(f'"{name}"' for name in names)
    return f'{rule} ::= "\\"" ({alternatives}) "\\""\n'


def _bounded_list(rule: str, item: str, most: int) -> str:
    return f'{rule} ::= "[" ({item} ("," {item}){{0,{most - 1}}})? "]"\n'


@lru_cache(maxsize=1)
def canvas_json_grammar() -> str:
    """Return the EBNF grammar (root rule ``root``) of a canvas as compact JSON.

    Every string the grammar matches is valid under ``canvas_json_schema()`` and loads with
    ``Canvas.model_validate_json``. Strings are one inline character-class repeat each, so a
    token mask costs the same at any point of a long description.

    Returns:
        The grammar text, for ``xgrammar.Grammar.from_ebnf``.
    """
    integer_max = int(MAX_DISTANCE_TO_VIEWER)
    more_digits = len(str(integer_max)) - 2
    rules = [
        'root ::= "{\\"global_description\\":" global ",\\"local_descriptions\\":" locals "}"\n',
        _object("global", _GLOBAL_FIELDS),
        _object("local", _LOCAL_FIELDS),
        _bounded_list("locals", "local", MAX_LOCAL_DESCRIPTIONS),
        _bounded_list("texts", "text", MAX_DETAILED_DESCRIPTIONS),
        f'text ::= "\\"" {_STRING_CHAR}{{0,{MAX_TEXT_CHARS}}} "\\""\n',
        f'tags ::= "\\"" {_STRING_CHAR}{{0,{MAX_TAGS_CHARS}}} "\\""\n',
        # Above 0 and at most the limit: a decimal with up to four places, or the limit itself.
        f'distance ::= "0." fraction | [1-9] [0-9]{{0,{more_digits}}} ("." [0-9]{{1,4}})? '
        f'| "{integer_max}" ("." "0"{{1,4}})?\n',
        'fraction ::= [1-9] [0-9]{0,3} | "0" [1-9] [0-9]{0,2} | "00" [1-9] [0-9]{0,1}'
        ' | "000" [1-9]\n',
        _enum("location", LOCATIONS),
        _enum("offset", OFFSETS),
        _enum("area", AREAS),
        _enum("color", COLOR_NAMES),
    ]
    return "".join(rules)
