"""Random and mutated input never crashes the parser: it parses or raises CanvasCodeError."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omost_schema import Canvas, CanvasCodeError, parse_code
from omost_schema.limits import MAX_CODE_CHARS
from strategies import canvases

_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_CODE_CHARS = st.sampled_from(list("canvas.()[]{}'\"\\#=,:\n _-*@0123456789eE`"))


def _parse_or_refuse(text: str, *, strict: bool) -> None:
    try:
        result = parse_code(text, strict=strict)
    except CanvasCodeError as caught:
        error = caught
    else:
        assert isinstance(result.canvas, Canvas)
        if strict:
            assert result.corrections == []
        return
    assert error.message
    lines = len(re.split(r"\r\n|\r|\n", text))
    assert error.line is None or 1 <= error.line <= lines


@given(st.text(max_size=400), st.booleans())
@_SETTINGS
def test_random_text_parses_or_is_refused(text: str, strict: bool) -> None:
    _parse_or_refuse(text, strict=strict)


@given(st.text(_CODE_CHARS, max_size=400), st.booleans())
@_SETTINGS
def test_random_code_like_text_parses_or_is_refused(text: str, strict: bool) -> None:
    _parse_or_refuse(text, strict=strict)


@st.composite
def _mutated_code(draw: st.DrawFn) -> str:
    code = draw(canvases(max_locals=2)).to_code()
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(code)))
        action = draw(st.sampled_from(["delete", "insert", "duplicate", "truncate"]))
        if action == "delete":
            code = code[:position] + code[position + draw(st.integers(1, 20)) :]
        elif action == "insert":
            code = (
                code[:position]
                + draw(st.text(_CODE_CHARS, min_size=1, max_size=5))
                + code[position:]
            )
        elif action == "duplicate":
            code = (
                code[:position]
                + code[position : position + draw(st.integers(1, 40))]
                + code[position:]
            )
        else:
            code = code[:position]
    return code


@given(_mutated_code(), st.booleans())
@_SETTINGS
def test_mutated_code_parses_or_is_refused(code: str, strict: bool) -> None:
    _parse_or_refuse(code, strict=strict)


@given(canvases(max_locals=3), st.data())
@settings(max_examples=60, deadline=None)
def test_truncated_printed_code_keeps_a_prefix_of_the_locals(
    canvas: Canvas, data: st.DataObject
) -> None:
    code = canvas.to_code()
    cut = data.draw(st.integers(0, len(code)))
    try:
        result = parse_code(code[:cut])
    except CanvasCodeError:
        return
    kept = result.canvas.local_descriptions
    # Whatever survives is the canvas's own beginning (a value cut inside a string may differ).
    assert result.canvas.global_description.HTML_web_color_name == (
        canvas.global_description.HTML_web_color_name
    )
    assert len(kept) <= len(canvas.local_descriptions)
    for got, want in zip(kept[:-1], canvas.local_descriptions, strict=False):
        assert got == want


def test_input_over_the_size_cap_is_refused_before_any_parsing() -> None:
    text = "#" * (MAX_CODE_CHARS + 1)
    with pytest.raises(CanvasCodeError, match="characters") as caught:
        parse_code(text)
    assert caught.value.line is None
    # One character less is parsed (and refused only for missing the global description).
    with pytest.raises(CanvasCodeError, match=r"missing canvas\.set_global_description"):
        parse_code(text[:-1])
