"""Prompt-lookup speculative decoding: drafts from the prompt, and the rule that verifies them.

An edit turn rewrites a canvas that is mostly the previous one, which sits in the prompt: after
the last few generated tokens, the prompt's continuation of the same tokens is a good guess of
what comes next. The draft is deterministic (one token per position, no draft model), so the
standard speculative acceptance rule becomes: accept draft token ``t`` with probability
``p(t)``; on rejection, sample from ``p`` with ``t`` removed and renormalised. The token then
has exactly the distribution ``p``, so sampling is unchanged; at temperature 0 a draft token is
accepted exactly when it is the argmax, so greedy output is identical.
"""

from __future__ import annotations

from typing import Any


class PromptLookup:
    """Proposes draft tokens by matching the last ``ngram`` tokens against the prompt.

    Args:
        prompt_ids: The prompt (it holds the canvas being edited).
        ngram: Tokens matched.
    """

    def __init__(self, prompt_ids: list[int], ngram: int) -> None:
        self._prompt = prompt_ids
        self._ngram = ngram
        # Each n-gram's positions (where its continuation starts), in prompt order.
        self._index: dict[tuple[int, ...], list[int]] = {}
        for start in range(len(prompt_ids) - ngram):
            key = tuple(prompt_ids[start : start + ngram])
            self._index.setdefault(key, []).append(start + ngram)
        self._cursor = 0

    def propose(self, context: list[int], most: int) -> list[int]:
        """Up to ``most`` draft tokens following the prompt's match of ``context``'s tail.

        Among several matches the first one after the previous draft's start wins (the answer
        walks through the old canvas in order), else the last one.

        Args:
            context: The prompt and the tokens generated so far (only the tail is read).
            most: Most draft tokens.

        Returns:
            The draft (empty when nothing matches).
        """
        if most <= 0 or len(context) < self._ngram:
            return []
        starts = self._index.get(tuple(context[-self._ngram :]))
        if not starts:
            return []
        start = next((s for s in starts if s >= self._cursor), starts[-1])
        self._cursor = start + 1
        return self._prompt[start : start + most]


def token_probs(logits: Any, temperature: float, top_p: float) -> Any:
    """The sampling distribution of ``logits`` (float32, ``(vocab,)``): temperature and top-p.

    Returns:
        Probabilities summing to 1 (float32, ``(vocab,)``); tokens outside the nucleus get 0.
    """
    import torch

    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # The smallest prefix whose mass reaches top_p (always at least the first token).
        outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs > top_p
        probs[order[outside]] = 0.0
        probs = probs / probs.sum()
    return probs


def residual(probs: Any, draft: int) -> Any:
    """``probs`` with the draft token removed and the rest renormalised (the rejection case)."""
    rest = probs.clone()
    rest[draft] = 0.0
    return rest / rest.sum()


def accept_draft(probs: Any, draft: int, generator: Any) -> tuple[int, bool]:
    """The speculative acceptance rule for a deterministic draft token.

    Accept ``draft`` with probability ``probs[draft]``; otherwise sample from
    ``residual(probs, draft)``. The result is distributed exactly as ``probs``:
    ``P(x) = p(d)[x = d] + (1 - p(d)) p(x)[x != d] / (1 - p(d)) = p(x)``.

    Args:
        probs: The target distribution (float32, ``(vocab,)``), grammar mask applied.
        draft: The draft token.
        generator: A ``torch.Generator`` or ``None``.

    Returns:
        The token, and whether it is the accepted draft.
    """
    import torch

    p = float(probs[draft])
    if p >= 1.0 or float(torch.rand(1, generator=generator)) < p:
        return draft, True
    return int(torch.multinomial(residual(probs, draft), 1, generator=generator)), False
