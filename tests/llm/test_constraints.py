"""The schema and grammar as decoders compile them: string bounds hold during decoding."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import xgrammar as xgr
from omost_llm.constraints import cache_safe_json_schema, decoding_grammar, decoding_json_schema
from omost_schema import canvas_json_schema, parse_code
from omost_schema.limits import MAX_TAGS_CHARS, MAX_TEXT_CHARS

from .fakes import fenced, make_canvas
from .processes import VLLM_PYTHON

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


# Run by vLLM's own Python: it compiles as vLLM does (xgrammar's grammar cache on) with the
# xgrammar that vLLM pins, which may be older than this environment's.
_VLLM_COMPILE = """
import json, sys
import xgrammar as xgr
vocab = [bytes([i]) for i in range(256)] + [b"<eos>"]
info = xgr.TokenizerInfo(vocab, vocab_size=len(vocab), stop_token_ids=[256])
compiler = xgr.GrammarCompiler(info, cache_enabled=True)
kind, text = sys.argv[1], open(sys.argv[2]).read()
try:
    if kind == "grammar":
        compiler.compile_grammar(text)
    else:
        compiler.compile_json_schema(text, any_whitespace=False)
except RuntimeError as error:
    print(str(error)[-400:])
    sys.exit(3)
"""


def _compiles_in_vllm(kind: str, text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    if not VLLM_PYTHON.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{VLLM_PYTHON} is missing (CI runs the vLLM integration tests)")
        pytest.skip(f"{VLLM_PYTHON} is missing: build it with `make vllm-venv`")
    source = tmp_path / f"{kind}.txt"
    source.write_text(text, encoding="utf-8")
    return subprocess.run(
        [str(VLLM_PYTHON), "-c", _VLLM_COMPILE, kind, str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.vllm
def test_vllms_xgrammar_compiles_what_the_vllm_backend_sends(tmp_path: Path) -> None:
    schema = _compiles_in_vllm("schema", json.dumps(cache_safe_json_schema()), tmp_path)
    assert schema.returncode == 0, schema.stdout + schema.stderr
    grammar = _compiles_in_vllm("grammar", decoding_grammar(), tmp_path)
    assert grammar.returncode == 0, grammar.stdout + grammar.stderr


@pytest.mark.vllm
def test_vllms_xgrammar_cache_fails_the_unsplit_schema_which_is_why_it_is_split(
    tmp_path: Path,
) -> None:
    # If this starts failing, vLLM's xgrammar hashes long repeats and the split can go.
    unsplit = _compiles_in_vllm("schema", json.dumps(decoding_json_schema()), tmp_path)
    assert unsplit.returncode == 3, unsplit.stdout + unsplit.stderr
    assert "per_rule_fsm_hashes" in unsplit.stdout


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
