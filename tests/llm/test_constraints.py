"""The schema and grammar as decoders compile them: string bounds hold during decoding."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import xgrammar as xgr
from omost_llm.constraints import cache_safe_json_schema, decoding_grammar, decoding_json_schema
from omost_schema import canvas_json_schema, parse_code
from omost_schema.limits import MAX_TAGS_CHARS, MAX_TEXT_CHARS

from .fakes import fenced, make_canvas

# A byte-level vocabulary: every string can be written, and compiling takes milliseconds.
_VOCAB = [bytes([i]) for i in range(256)] + [b"<eos>"]
_EOS = len(_VOCAB) - 1


def _compiler(*, cache: bool) -> Any:
    info = xgr.TokenizerInfo(_VOCAB, vocab_size=len(_VOCAB), stop_token_ids=[_EOS])
    return xgr.GrammarCompiler(info, cache_enabled=cache)


def _json_matcher(schema: dict[str, Any], *, cache: bool) -> Any:
    compiled = _compiler(cache=cache).compile_json_schema(
        json.dumps(schema), any_whitespace=False, separators=(",", ":")
    )
    return xgr.GrammarMatcher(compiled)


def _description_of(chars: int) -> str:
    return '{"global_description":{"description":"' + "x" * chars


@pytest.mark.parametrize(
    ("schema", "cache"),
    [(decoding_json_schema(), False), (cache_safe_json_schema(), True)],
    ids=["as-is-without-cache", "split-with-cache"],
)
def test_string_length_bound_holds_while_decoding(schema: dict[str, Any], cache: bool) -> None:
    at_limit = _json_matcher(schema, cache=cache)
    assert at_limit.accept_string(_description_of(MAX_TEXT_CHARS))
    assert not at_limit.accept_string("x")
    assert at_limit.accept_string('"')
    over = _json_matcher(schema, cache=cache)
    assert not over.accept_string(_description_of(MAX_TEXT_CHARS + 1))


def test_split_patterns_match_exactly_the_bounded_strings() -> None:
    split = cache_safe_json_schema()["$defs"]
    original = canvas_json_schema()["$defs"]
    for name, bound in (("text", MAX_TEXT_CHARS), ("tags", MAX_TAGS_CHARS)):
        assert split[name]["pattern"] != original[name]["pattern"]
        pattern = re.compile(split[name]["pattern"])
        for length in (0, 1, 124, 125, 126, 250, bound - 1, bound):
            assert pattern.fullmatch("a" * length), (name, length)
        assert not pattern.fullmatch("a" * (bound + 1))
        assert not pattern.fullmatch('a"')
        assert not pattern.fullmatch("\t")


def test_the_schema_as_is_fails_xgrammar_cache_which_is_why_vllm_gets_it_split() -> None:
    # If this starts passing, xgrammar's cache hashes long repeats and the split can go.
    with pytest.raises(RuntimeError, match="per_rule_fsm_hashes"):
        _compiler(cache=True).compile_json_schema(
            json.dumps(decoding_json_schema()), any_whitespace=False
        )


def test_grammar_is_the_fenced_omost_block() -> None:
    compiled = _compiler(cache=False).compile_grammar(decoding_grammar())
    answer = fenced(make_canvas())
    matcher = xgr.GrammarMatcher(compiled)
    assert matcher.accept_string(answer)
    assert matcher.accept_token(_EOS)
    assert matcher.is_terminated()
    assert parse_code(answer, strict=True).canvas == make_canvas()
    unfenced = xgr.GrammarMatcher(compiled)
    assert not unfenced.accept_string(make_canvas().to_code())
