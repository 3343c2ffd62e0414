"""The decoding loop on the `tiny` model: prompt lookup and jump-forward keep every guarantee.

Greedy answers are identical with and without prompt lookup and jump-forward (both are drafts
verified in one forward pass); every answer passes the strict parser; deltas come in order and
add up to the answer; cancelling stops before the next forward pass.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pytest
import xgrammar as xgr
from omost_llm.backends.model_loading import load_model
from omost_llm.backends.prefix_cache import PrefixCache
from omost_llm.backends.token_loop import DecodeStats, LoopParams, run_loop
from omost_llm.backends.transformers_backend import _stop_ids, compile_constraint
from omost_llm.canvas_output import read_output
from omost_llm.config import OutputMode, Settings
from omost_llm.metrics import Metrics
from omost_llm.protocol import GenerationEnd, GenerationEvent, TextDelta
from omost_llm.serving import Composer
from omost_llm.tiny import TINY_VOCAB_FILE
from omost_schema import COMPACT_BUDGET

from .fakes import FakeBackend, make_canvas


@dataclass
class Tiny:
    model: Any
    tokenizer: Any
    stop: set[int]
    compiled: dict[OutputMode, Any]
    prompts: dict[OutputMode, list[int]]
    edits: dict[OutputMode, list[list[int]]]


@pytest.fixture(scope="module")
def tiny() -> Tiny:
    settings = Settings(model="tiny", threads=1)
    if not (settings.cache_dir / TINY_VOCAB_FILE).is_file():
        pytest.skip(
            f"{settings.cache_dir / TINY_VOCAB_FILE} missing: run scripts/fetch-tiny-vocab.sh"
        )
    model, tokenizer = load_model(settings)
    stop = _stop_ids(model, tokenizer)
    info = xgr.TokenizerInfo.from_huggingface(
        tokenizer, vocab_size=int(model.config.vocab_size), stop_token_ids=sorted(stop)
    )
    compiled: dict[OutputMode, Any] = {}
    edits: dict[OutputMode, list[list[int]]] = {}
    for output in OutputMode:
        compiled[output] = compile_constraint(info, output, COMPACT_BUDGET)
        composer = Composer(FakeBackend(), Settings(model="tiny", output=output), Metrics())
        conversations = [
            composer.canvas_conversation("make it blue", make_canvas(locals_=2)),
            composer.canvas_conversation("a lighthouse at night", None),
            composer.canvas_conversation("add a red boat", make_canvas(locals_=1)),
        ]
        edits[output] = []
        for conversation in conversations:
            messages = [{"role": m.role, "content": m.content} for m in conversation.messages]
            text = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            edits[output].append(tokenizer(text, add_special_tokens=False)["input_ids"])
    prompts = {output: edits[output][0] for output in OutputMode}
    return Tiny(model, tokenizer, stop, compiled, prompts, edits)


@dataclass
class Run:
    events: list[GenerationEvent]
    stats: DecodeStats

    @property
    def text(self) -> str:
        return "".join(e.text for e in self.events if isinstance(e, TextDelta))


def generate(
    tiny: Tiny,
    output: OutputMode,
    *,
    lookup: int = 0,
    ngram: int = 3,
    jump: bool = False,
    temperature: float = 0.0,
    seed: int = 0,
    max_tokens: int = 800,
    cancel_after: int | None = None,
    prefix: PrefixCache | None = None,
    prompt: list[int] | None = None,
) -> Run:
    matcher = xgr.GrammarMatcher(tiny.compiled[output])
    bitmask = xgr.allocate_token_bitmask(1, int(tiny.model.config.vocab_size))
    params = LoopParams(
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=0.9,
        seed=seed,
        stop=[],
        lookup_tokens=lookup,
        lookup_ngram=ngram,
        jump_forward=jump,
    )
    events: list[GenerationEvent] = []
    stats = DecodeStats()
    cancel = threading.Event()

    def emit(event: GenerationEvent) -> None:
        events.append(event)
        if cancel_after is not None and len(events) >= cancel_after:
            cancel.set()
            events.append(TextDelta(f"<cancelled after pass {stats.forward_passes}>"))

    run_loop(
        tiny.model,
        tiny.tokenizer,
        tiny.prompts[output] if prompt is None else prompt,
        params,
        matcher,
        bitmask,
        tiny.stop,
        emit,
        cancel,
        stats,
        prefix,
    )
    return Run(events, stats)


def check_answer(run: Run, output: OutputMode) -> None:
    assert isinstance(run.events[-1], GenerationEnd)
    assert run.events[-1].finish_reason == "stop"
    assert all(isinstance(e, TextDelta) for e in run.events[:-1])
    # Token counts of the deltas add up to the answer's (the stop token is not text).
    deltas = sum(e.tokens for e in run.events if isinstance(e, TextDelta))
    assert deltas <= run.events[-1].completion_tokens
    read_output(run.text, output, strict=True)


@pytest.mark.parametrize("output", list(OutputMode))
def test_greedy_answers_are_identical_with_prompt_lookup(tiny: Tiny, output: OutputMode) -> None:
    plain = generate(tiny, output)
    # A one-token n-gram drafts at almost every step, so verification runs all the time.
    drafted = generate(tiny, output, lookup=8, ngram=1)
    assert drafted.text == plain.text
    assert drafted.stats.verifications > 5
    assert drafted.stats.accepted > 0
    assert drafted.stats.forward_passes < plain.stats.forward_passes
    check_answer(drafted, output)


@pytest.mark.parametrize("output", list(OutputMode))
def test_sampled_answers_with_lookup_and_jump_forward_parse_strictly(
    tiny: Tiny, output: OutputMode
) -> None:
    for seed in range(3):
        run = generate(tiny, output, lookup=8, ngram=1, jump=True, temperature=0.8, seed=seed)
        check_answer(run, output)


@pytest.mark.parametrize("output", list(OutputMode))
def test_greedy_answers_are_identical_with_jump_forward_and_prompt_lookup(
    tiny: Tiny, output: OutputMode
) -> None:
    for prompt in tiny.edits[output]:
        plain = generate(tiny, output, prompt=prompt)
        check_answer(plain, output)
        for lookup, jump in ((0, True), (8, False), (8, True)):
            run = generate(tiny, output, prompt=prompt, lookup=lookup, ngram=1, jump=jump)
            assert run.text == plain.text, (lookup, jump)
            end, plain_end = run.events[-1], plain.events[-1]
            assert isinstance(end, GenerationEnd)
            assert isinstance(plain_end, GenerationEnd)
            assert (end.finish_reason, end.completion_tokens) == (
                plain_end.finish_reason,
                plain_end.completion_tokens,
            )
            check_answer(run, output)
            if jump:
                # Forced text is drafted at every pass the grammar forces some, and the
                # tokens the model would have written anyway are appended without a pass.
                assert run.stats.jumps > 0
                assert run.stats.forced > 0
                assert run.stats.forward_passes < plain.stats.forward_passes


def test_the_end_event_reports_drafts_and_forced_tokens(tiny: Tiny) -> None:
    run = generate(tiny, OutputMode.JSON, lookup=8, ngram=1, jump=True)
    end = run.events[-1]
    assert isinstance(end, GenerationEnd)
    assert (end.draft_tokens, end.accepted_draft_tokens) == (run.stats.drafted, run.stats.accepted)
    assert end.forced_tokens == run.stats.forced > 0


def test_max_tokens_holds_with_drafts_and_jumps(tiny: Tiny) -> None:
    run = generate(tiny, OutputMode.JSON, lookup=8, ngram=1, jump=True, max_tokens=20)
    end = run.events[-1]
    assert isinstance(end, GenerationEnd)
    assert (end.finish_reason, end.completion_tokens) == ("length", 20)


def test_cancelling_stops_before_the_next_forward_pass(tiny: Tiny) -> None:
    run = generate(tiny, OutputMode.CODE, lookup=8, ngram=1, jump=True, cancel_after=3)
    assert not any(isinstance(e, GenerationEnd) for e in run.events)
    marker = next(e.text for e in run.events if isinstance(e, TextDelta) and "cancelled" in e.text)
    assert marker == f"<cancelled after pass {run.stats.forward_passes}>"


def test_the_kept_cache_serves_the_shared_prefix_and_changes_no_answer(tiny: Tiny) -> None:
    prefix = PrefixCache()
    first = generate(tiny, OutputMode.CODE, prefix=prefix)
    assert first.stats.reused == 0
    # The same prompt again: all but its last token come from the cache; the answer is the same.
    again = generate(tiny, OutputMode.CODE, prefix=prefix)
    assert again.stats.reused == len(tiny.prompts[OutputMode.CODE]) - 1
    assert again.text == first.text
    # A prompt that shares only the system prompt: that much is reused, the answer unchanged.
    other = tiny.prompts[OutputMode.JSON]
    shared = next(
        i
        for i, (a, b) in enumerate(zip(other, tiny.prompts[OutputMode.CODE], strict=False))
        if a != b
    )
    fresh = generate(tiny, OutputMode.CODE, prompt=other)
    reused = generate(
        tiny, OutputMode.CODE, prompt=other, prefix=prefix, lookup=8, ngram=1, jump=True
    )
    assert reused.stats.reused == shared
    plain_jump = generate(tiny, OutputMode.CODE, prompt=other, lookup=8, ngram=1, jump=True)
    assert reused.text == plain_jump.text
    assert (
        fresh.events[-1]
        == generate(tiny, OutputMode.CODE, prompt=other, prefix=PrefixCache()).events[-1]
    )
    # A cancelled generation keeps a consistent cache too.
    generate(tiny, OutputMode.CODE, prefix=prefix, cancel_after=3)
    assert generate(tiny, OutputMode.CODE, prefix=prefix).text == first.text
