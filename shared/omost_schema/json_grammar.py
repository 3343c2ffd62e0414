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

from omost_schema.grammar_parts import GLOBAL_FIELDS, LOCAL_FIELDS, distance_rules, text_char
from omost_schema.limits import FULL_BUDGET, CanvasBudget
from omost_schema.vocab import AREAS, COLOR_NAMES, LOCATIONS, OFFSETS

# JSON strings without escapes: no quote or backslash either.
_STRING_CHAR = text_char('"\\\\')


def _object(rule: str, fields: tuple[tuple[str, str], ...]) -> str:
    members = ' "," '.join(f'"\\"{name}\\":" {value}' for name, value in fields)
    return f'{rule} ::= "{{" {members} "}}"\n'


def _enum(rule: str, names: tuple[str, ...]) -> str:
    alternatives = " | ".join(f'"{name}"' for name in names)
    return f'{rule} ::= "\\"" ({alternatives}) "\\""\n'


def _bounded_list(rule: str, item: str, most: int) -> str:
    if most == 0:
        return f'{rule} ::= "[]"\n'
    return f'{rule} ::= "[" ({item} ("," {item}){{0,{most - 1}}})? "]"\n'


@lru_cache(maxsize=16)
def canvas_json_grammar(budget: CanvasBudget = FULL_BUDGET) -> str:
    """Return the EBNF grammar (root rule ``root``) of a canvas as compact JSON.

    Every string the grammar matches is valid under ``canvas_json_schema(budget)`` and loads
    with ``Canvas.model_validate_json``. Strings are one inline character-class repeat each, so
    a token mask costs the same at any point of a long description.

    Args:
        budget: Most locals, detailed descriptions per region and characters per string.

    Returns:
        The grammar text, for ``xgrammar.Grammar.from_ebnf``.
    """
    rules = [
        'root ::= "{\\"global_description\\":" global ",\\"local_descriptions\\":" locals "}"\n',
        _object("global", GLOBAL_FIELDS),
        _object("local", LOCAL_FIELDS),
        _bounded_list("locals", "local", budget.max_locals),
        _bounded_list("texts", "text", budget.max_detailed_descriptions),
        f'text ::= "\\"" {_STRING_CHAR}{{0,{budget.max_chars}}} "\\""\n',
        f'tags ::= "\\"" {_STRING_CHAR}{{0,{budget.max_tags_chars}}} "\\""\n',
        distance_rules(integers=True),
        _enum("location", LOCATIONS),
        _enum("offset", OFFSETS),
        _enum("area", AREAS),
        _enum("color", COLOR_NAMES),
    ]
    return "".join(rules)
