"""The in-process decoding loop: one token at a time, masked by an xgrammar matcher if any.

Runs in a worker thread; it reports through a callback and stops when asked (client gone).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omost_llm.protocol import GenerationEnd, GenerationEvent, TextDelta


@dataclass(frozen=True)
class LoopParams:
    """Sampling settings of one generation."""

    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: list[str]


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


class TextAssembler:
    """Turns token ids into text deltas, holding back bytes of a character not yet complete."""

    def __init__(self, tokenizer: Any) -> None:
        """Decode with ``tokenizer``."""
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self.text = ""

    def add(self, token_id: int) -> str:
        """Add a token; return the new complete text."""
        self._ids.append(token_id)
        full = str(self._tokenizer.decode(self._ids, skip_special_tokens=True))
        if full.endswith("\ufffd"):
            return ""
        delta, self.text = full[len(self.text) :], full
        return delta


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
) -> None:
    """Generate up to ``params.max_tokens`` tokens, emitting text deltas and one end event.

    Args:
        model: A causal LM (``transformers``), on its device.
        tokenizer: Its tokenizer.
        prompt_ids: The templated prompt.
        params: Sampling settings.
        matcher: An ``xgrammar.GrammarMatcher`` (constrained) or ``None``.
        bitmask: The matcher's token bitmask buffer (int32, ``(1, ceil(vocab / 32))``), or ``None``.
        stop_ids: Tokens that end the answer.
        emit: Receives each event (called from this thread).
        cancel: Set to stop early; no end event is sent then.
    """
    import torch
    import xgrammar as xgr
    from transformers import DynamicCache

    generator = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
    cache = DynamicCache()
    device = model.device
    inputs = torch.tensor([prompt_ids], device=device)
    assembler = TextAssembler(tokenizer)
    finish = "length"
    steps = 0
    with torch.inference_mode():
        while steps < params.max_tokens:
            if cancel.is_set():
                return
            out = model(input_ids=inputs, cache=cache, use_cache=True)
            logits = out.logits[0, -1].float().cpu()  # (vocab,)
            if matcher is not None:
                matcher.fill_next_token_bitmask(bitmask)
                xgr.apply_token_bitmask_inplace(logits, bitmask[0])
            token = sample_token(logits, params.temperature, params.top_p, generator)
            steps += 1
            if matcher is not None and not matcher.accept_token(token):
                raise RuntimeError(f"the grammar refused token {token} it had allowed")
            if token in stop_ids:
                finish = "stop"
                break
            delta = assembler.add(token)
            cut = _stop_index(assembler.text, params.stop)
            if cut is not None:
                delta = delta[: max(0, len(delta) - (len(assembler.text) - cut))]
                if delta:
                    emit(TextDelta(delta))
                finish = "stop"
                break
            if delta:
                emit(TextDelta(delta))
            if matcher is not None and matcher.is_terminated():
                finish = "stop"
                break
            inputs = torch.tensor([[token]], device=device)
    emit(GenerationEnd(finish, prompt_tokens=len(prompt_ids), completion_tokens=steps))


def _stop_index(text: str, stops: list[str]) -> int | None:
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(found) if found else None
