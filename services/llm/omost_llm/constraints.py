"""The canvas schema and grammar in the form decoding engines (xgrammar, vLLM) compile."""

from __future__ import annotations

import copy
import re
from typing import Any

from omost_schema import canvas_grammar, canvas_json_schema

# `^[...]{0,N}$`: a character class repeated at most N times.
_BOUNDED_CLASS = re.compile(r"^\^(\[(?:\\.|[^\]])*\])\{0,(\d+)\}\$$")


def _rewrite(node: Any) -> Any:
    if isinstance(node, dict):
        out = {key: _rewrite(value) for key, value in node.items()}
        pattern = out.get("pattern", "") if out.get("type") == "string" else ""
        match = _BOUNDED_CLASS.match(pattern)
        if match:
            # xgrammar fails to compile (or takes minutes on) a long bounded repeat of a class,
            # and ignores maxLength next to a pattern. The class keeps strings free of control
            # characters; the length bound is left to the strict parser after decoding.
            out["pattern"] = f"^{match.group(1)}*$"
            out["maxLength"] = int(match.group(2))
        return out
    if isinstance(node, list):
        return [_rewrite(item) for item in node]
    return node


def decoding_json_schema() -> dict[str, Any]:
    """``canvas_json_schema()`` with bounded string patterns as a starred class plus maxLength."""
    return _rewrite(copy.deepcopy(canvas_json_schema()))  # type: ignore[no-any-return]


def decoding_grammar() -> str:
    """``canvas_grammar()``: the EBNF of Omost code, for xgrammar and vLLM."""
    return canvas_grammar()
