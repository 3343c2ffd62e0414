"""The in-process decoding loop, masked by an xgrammar matcher if any.

Each forward pass feeds the tokens not yet in the KV cache: the last sampled token and a draft
to verify after it, made of the tokens of the text the grammar forces (jump-forward) and then a
prompt-lookup continuation. Every position's logits are masked with the grammar state after the
tokens before it, and tokens are accepted into the matcher one at a time, so a draft that strays
from the grammar is simply rejected there and nothing refused is ever produced; greedy keeps the
draft tokens that equal the masked argmax, sampling uses the speculative acceptance rule, so the
answer (greedy) or its distribution (sampling) is the one decoding without drafts gives. The
first rejected position yields the model's own token, so every pass makes progress. The cache is
cut back to the accepted tokens after each pass.

Runs in a worker thread; it reports through a callback and stops when asked (client gone),
checking before every forward pass.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omost_llm.backends.jump_forward import forced_draft
from omost_llm.backends.prefix_cache import PrefixCache
from omost_llm.backends.speculation import PromptLookup, accept_draft, token_probs
from omost_llm.protocol import GenerationEnd, GenerationEvent, TextDelta


@dataclass(frozen=True)
class LoopParams:
    """Sampling and decoding settings of one generation.

    Attributes:
        max_tokens: Most new tokens.
        temperature: Sampling temperature; 0 is greedy.
        top_p: Nucleus sampling mass.
        seed: Sampling seed.
        stop: Stop strings.
        lookup_tokens: Most prompt-lookup draft tokens per forward pass (0: off); they follow
            the forced draft, if any.
        lookup_ngram: Tokens matched against the prompt to find a draft.
        jump_forward: Draft the tokens of the text the grammar forces (at most
            ``jump_forward.MAX_FORCED_DRAFT`` per pass).
    """

    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: list[str]
    lookup_tokens: int = 0
    lookup_ngram: int = 3
    jump_forward: bool = False


@dataclass
class DecodeStats:
    """What one generation's loop did, for benchmarks and metrics.

    Attributes:
        forward_passes: Forward passes of the model.
        verifications: Passes that carried a prompt-lookup draft.
        drafted: Prompt-lookup draft tokens proposed.
        accepted: Prompt-lookup draft tokens accepted.
        jumps: Passes that carried a forced (jump-forward) draft.
        forced_drafted: Forced draft tokens proposed.
        forced: Forced draft tokens accepted (appended without a pass of their own).
        tokens: Tokens generated.
        prefill_s: Seconds of the first forward pass (the prompt), a part of every answer's
            time that no decoding technique shortens.
        reused: Prompt tokens already in the kept cache (not fed again).
    """

    forward_passes: int = 0
    verifications: int = 0
    drafted: int = 0
    accepted: int = 0
    jumps: int = 0
    forced_drafted: int = 0
    forced: int = 0
    tokens: int = 0
    prefill_s: float = 0.0
    reused: int = 0


def sample_token(logits: Any, temperature: float, top_p: float, generator: Any) -> int:
    """Pick the next token from ``logits`` (float32, shape ``(vocab,)``).

    Greedy at temperature 0, else nucleus sampling with ``top_p``.
    """
    import torch

    if temperature <= 0.0:
        return int(torch.argmax(logits).item())
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (always at least the first token).
        outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs > top_p
        sorted_probs[outside] = 0.0
        choice = torch.multinomial(sorted_probs / sorted_probs.sum(), 1, generator=generator)
        return int(order[choice].item())
    return int(torch.multinomial(probs, 1, generator=generator).item())


def choose_token(
    logits: Any, draft: int | None, params: LoopParams, generator: Any
) -> tuple[int, bool]:
    """The next token at one position, and whether it is the (accepted) draft token.

    Without a draft this is ``sample_token``. With one: greedy accepts it when it is the argmax
    (so the output is the same as without drafts); sampling uses ``accept_draft``, which leaves
    the distribution unchanged.
    """
    import torch

    if params.temperature <= 0.0:
        token = int(torch.argmax(logits).item())
        return token, token == draft
    if draft is None:
        return sample_token(logits, params.temperature, params.top_p, generator), False
    probs = token_probs(logits, params.temperature, params.top_p)
    return accept_draft(probs, draft, generator)


class TextAssembler:
    """Turns token ids into text deltas, holding back bytes of a character not yet complete."""

    def __init__(self, tokenizer: Any) -> None:
        """Decode with ``tokenizer``."""
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self.text = ""

    def add(self, token_id: int) -> str:
        """Add a token; return the new complete text."""
        return self.extend([token_id])

    def extend(self, token_ids: list[int]) -> str:
        """Add tokens; return the new complete text."""
        self._ids.extend(token_ids)
        full = str(self._tokenizer.decode(self._ids, skip_special_tokens=True))
        if full.endswith("\ufffd") or not full.startswith(self.text):
            return ""
        delta, self.text = full[len(self.text) :], full
        return delta


class _Output:
    """Sends text deltas with their token counts, and watches for stop strings."""

    def __init__(self, tokenizer: Any, stop: list[str], emit: Callable[[GenerationEvent], None]):
        self._assembler = TextAssembler(tokenizer)
        self._stop = stop
        self._emit = emit
        self._tokens = 0

    def add(self, tokens: list[int]) -> bool:
        """Add tokens and send the new text; return True when a stop string has appeared."""
        self._tokens += len(tokens)
        delta = self._assembler.extend(tokens)
        text = self._assembler.text
        cut = _stop_index(text, self._stop)
        if cut is not None:
            delta = delta[: max(0, len(delta) - (len(text) - cut))]
        if delta:
            self._emit(TextDelta(delta, tokens=self._tokens))
            self._tokens = 0
        return cut is not None


def run_loop(
    model: Any,
    tokenizer: Any,
    prompt_ids: list[int],
    params: LoopParams,
    matcher: Any,
    bitmask: Any,
    stop_ids: set[int],
    emit: Callable[[GenerationEvent], None],
    cancel: threading.Event,
    stats: DecodeStats | None = None,
    prefix: PrefixCache | None = None,
) -> None:
    """Generate up to ``params.max_tokens`` tokens, emitting text deltas and one end event.

    Args:
        model: A causal LM (``transformers``), on its device.
        tokenizer: Its tokenizer.
        prompt_ids: The templated prompt.
        params: Sampling and decoding settings.
        matcher: An ``xgrammar.GrammarMatcher`` (constrained) or ``None``; jump-forward needs it.
        bitmask: The matcher's token bitmask buffer (int32, ``(1, ceil(vocab / 32))``), or ``None``.
        stop_ids: Tokens that end the answer.
        emit: Receives each event (called from this thread).
        cancel: Set to stop early; no end event is sent then.
        stats: Filled with what the loop did, when given.
        prefix: The kept cache of the last generation: its common prefix with the prompt is
            not fed again, and this generation's cache is kept there when it ends.
    """
    import torch
    from transformers import DynamicCache

    stats = stats if stats is not None else DecodeStats()
    generator = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
    lookup = PromptLookup(prompt_ids, params.lookup_ngram) if params.lookup_tokens > 0 else None
    cache, cached = prefix.take(prompt_ids) if prefix is not None else (DynamicCache(), 0)
    stats.reused = cached
    output = _Output(tokenizer, params.stop, emit)
    generated: list[int] = []
    pending = prompt_ids[cached:]  # fed to the model next: not yet in the cache
    finish = "length"
    with torch.inference_mode():
        while len(generated) < params.max_tokens:
            if cancel.is_set():
                break
            forced, drafts = _drafts(params, lookup, matcher, tokenizer, prompt_ids, generated)
            started = time.perf_counter()
            inputs = torch.tensor([pending + drafts], device=model.device)
            # Logits only where a new token is predicted: after pending[-1] and each draft.
            out = model(
                input_ids=inputs, cache=cache, use_cache=True, logits_to_keep=len(drafts) + 1
            )
            rows = out.logits[0].float().cpu()  # (1 + drafts, vocab)
            if not stats.forward_passes:
                stats.prefill_s = time.perf_counter() - started
            stats.forward_passes += 1
            new, accepted, ended = _verify(
                rows, drafts, params, matcher, bitmask, stop_ids, generator
            )
            _count(stats, forced, len(drafts) - forced, accepted)
            generated += new
            # The cache holds pending and every draft; keep pending and the accepted drafts.
            cached += len(pending) + accepted
            extra = cache.get_seq_length() - cached
            if extra > 0:
                cache.crop(-extra)  # transformers 5: a negative count removes that many
            stopped = output.add(new) if new else False
            if ended or stopped:
                finish = "stop"
                break
            pending = [new[-1]]
    stats.tokens = len(generated)
    if prefix is not None:
        # The cache holds the prompt and every generated token but those still pending.
        prefix.keep((prompt_ids + generated)[:cached], cache)
    if cancel.is_set():
        return
    end = GenerationEnd(
        finish,
        prompt_tokens=len(prompt_ids),
        completion_tokens=len(generated),
        draft_tokens=stats.drafted,
        accepted_draft_tokens=stats.accepted,
        forced_tokens=stats.forced,
    )
    emit(end)


def _drafts(
    params: LoopParams,
    lookup: PromptLookup | None,
    matcher: Any,
    tokenizer: Any,
    prompt_ids: list[int],
    generated: list[int],
) -> tuple[int, list[int]]:
    """The next pass's draft: the forced tokens, then a prompt-lookup continuation.

    Returns:
        How many of the draft's tokens are forced (they come first), and the draft. It leaves
        room for the token chosen after it within ``max_tokens``.
    """
    room = params.max_tokens - len(generated) - 1
    drafts: list[int] = []
    if params.jump_forward and matcher is not None:
        drafts = forced_draft(matcher, tokenizer, generated[-1] if generated else None, room)
    forced = len(drafts)
    if lookup is not None and generated:
        most = min(params.lookup_tokens, room - forced)
        drafts += lookup.propose(prompt_ids + generated + drafts, most)
    return forced, drafts


def _count(stats: DecodeStats, forced: int, looked_up: int, accepted: int) -> None:
    """Add one pass's drafts to ``stats``: the forced ones come first in the draft."""
    forced_accepted = min(forced, accepted)
    if forced:
        stats.jumps += 1
        stats.forced_drafted += forced
        stats.forced += forced_accepted
    if looked_up:
        stats.verifications += 1
        stats.drafted += looked_up
        stats.accepted += accepted - forced_accepted


def _verify(
    rows: Any,
    drafts: list[int],
    params: LoopParams,
    matcher: Any,
    bitmask: Any,
    stop_ids: set[int],
    generator: Any,
) -> tuple[list[int], int, bool]:
    """Choose tokens position by position until a draft is rejected or the answer ends.

    Returns:
        The new tokens (accepted drafts, then the one chosen where the draft ended or was
        rejected; a stop token is not included), how many of them are accepted drafts, and
        whether the answer ended (a stop token, or the matcher terminated).
    """
    import xgrammar as xgr

    new: list[int] = []
    accepted = 0
    for position in range(len(drafts) + 1):
        logits = rows[position]
        if matcher is not None:
            matcher.fill_next_token_bitmask(bitmask)
            xgr.apply_token_bitmask_inplace(logits, bitmask[0])
        draft = drafts[position] if position < len(drafts) else None
        token, is_draft = choose_token(logits, draft, params, generator)
        if matcher is not None and not matcher.accept_token(token):
            raise RuntimeError(f"the grammar refused token {token} it had allowed")
        if token in stop_ids:
            return new, accepted, True
        new.append(token)
        if matcher is not None and matcher.is_terminated():
            return new, accepted, True
        if not is_draft:
            break
        accepted += 1
    return new, accepted, False


def _stop_index(text: str, stops: list[str]) -> int | None:
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(found) if found else None
