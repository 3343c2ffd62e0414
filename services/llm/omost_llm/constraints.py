"""The canvas schema and grammar in the forms decoding engines (xgrammar, vLLM) compile."""

from __future__ import annotations

import re
from typing import Any

from omost_schema import (
    FULL_BUDGET,
    CanvasBudget,
    canvas_grammar,
    canvas_json_grammar,
    canvas_json_schema,
)

# `^[...]{0,N}$`: a character class repeated at most N times.
_BOUNDED_CLASS = re.compile(r"^\^(\[(?:\\.|[^\]])*\])\{0,(\d+)\}\$$")
# The longest bounded repeat xgrammar 0.2.8 hashes for its grammar cache: from about 150 up, the
# cache's FSM hasher fails a check ("per_rule_fsm_hashes ... has_value()") and the compile
# aborts. vLLM always compiles with the cache on, so every bound it sees stays at or under this.
_MAX_REPEAT = 125


def decoding_grammar(budget: CanvasBudget = FULL_BUDGET) -> str:
    """The EBNF of an Omost answer: a fenced python block of canvas code, as Omost models write.

    The fence is part of the grammar, so the model writes what it was trained to write, and the
    service only adds a sentence before it.
    """
    return canvas_grammar(budget=budget, fenced=True)


def decoding_json_grammar(budget: CanvasBudget = FULL_BUDGET) -> str:
    """The EBNF of a canvas as compact JSON, for engines that compile a grammar (in-process).

    A subset of ``decoding_json_schema()`` whose token masks are hundreds of times cheaper
    under xgrammar than the schema's string patterns (see ``omost_schema.json_grammar``).
    """
    return canvas_json_grammar(budget)


def decoding_json_schema(budget: CanvasBudget = FULL_BUDGET) -> dict[str, Any]:
    """``canvas_json_schema(budget)`` unchanged: its string patterns bound every string's length.

    For servers that take a JSON schema and do not use xgrammar's grammar cache (hosted
    OpenAI-compatible servers).
    """
    return canvas_json_schema(budget)


def cache_safe_json_schema(budget: CanvasBudget = FULL_BUDGET) -> dict[str, Any]:
    """``canvas_json_schema(budget)`` with each long bounded string pattern split up.

    ``^C{0,N}$`` becomes ``^(?:C{K}){0,N/K-1}C{0,K}$`` with ``K`` the largest divisor of ``N``
    not above the cache's limit: the same strings (length 0 to N), so the bound still holds
    during decoding, in repeats that xgrammar's grammar cache (always on in vLLM) can hash. A
    bound with no such divisor (a prime, as a request's budget may give) becomes
    ``^(?:(?:C{K}){0,Q-1}C{0,K}|(?:C{K}){Q}C{0,R})$`` with ``N = Q*K + R``: again exactly the
    lengths 0 to N.
    """
    return _split_repeats(canvas_json_schema(budget))  # type: ignore[no-any-return]


def _split_repeats(node: Any) -> Any:
    if isinstance(node, dict):
        out = {key: _split_repeats(value) for key, value in node.items()}
        pattern = out.get("pattern", "") if out.get("type") == "string" else ""
        match = _BOUNDED_CLASS.match(pattern)
        if match and int(match.group(2)) > _MAX_REPEAT:
            out["pattern"] = _chunked(match.group(1), int(match.group(2)))
        return out
    if isinstance(node, list):
        return [_split_repeats(item) for item in node]
    return node


def _chunked(char_class: str, bound: int) -> str:
    chunk = next((k for k in range(_MAX_REPEAT, 1, -1) if bound % k == 0), None)
    if chunk is not None:
        full = bound // chunk - 1
        return f"^(?:{char_class}{{{chunk}}}){{0,{full}}}{char_class}{{0,{chunk}}}$"
    whole, rest = divmod(bound, _MAX_REPEAT)
    block = f"(?:{char_class}{{{_MAX_REPEAT}}})"
    below = f"{block}{{0,{whole - 1}}}{char_class}{{0,{_MAX_REPEAT}}}"
    return f"^(?:{below}|{block}{{{whole}}}{char_class}{{0,{rest}}})$"
