"""Prompt lookup's and jump-forward's drafts and the speculative acceptance rule."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from omost_llm.backends.jump_forward import MAX_FORCED_DRAFT, forced_draft
from omost_llm.backends.speculation import PromptLookup, accept_draft, residual, token_probs


def test_prompt_lookup_proposes_what_followed_the_same_tokens_in_the_prompt() -> None:
    prompt = [1, 2, 3, 4, 5, 6, 2, 3, 9, 9]
    assert PromptLookup(prompt, ngram=2).propose([7, 2, 3], most=3) == [4, 5, 6]
    assert PromptLookup(prompt, ngram=2).propose([6, 2, 3], most=5) == [4, 5, 6, 2, 3]
    lookup = PromptLookup(prompt, ngram=2)
    assert lookup.propose([8, 8], most=3) == []
    assert lookup.propose([3], most=3) == []  # shorter than the n-gram
    assert lookup.propose([2, 3], most=0) == []


def test_prompt_lookup_walks_through_the_prompt_in_order() -> None:
    # The answer copies the prompt: the second "2 3" continues at the prompt's second one.
    lookup = PromptLookup([2, 3, 4, 0, 2, 3, 8, 8], ngram=2)
    assert lookup.propose([2, 3], most=2) == [4, 0]
    assert lookup.propose([2, 3, 4, 0, 2, 3], most=2) == [8, 8]
    # Past the last match, the last one is used again.
    assert lookup.propose([2, 3], most=1) == [8]


@pytest.mark.parametrize("seed", range(5))
def test_the_acceptance_rule_leaves_the_distribution_exactly_unchanged(seed: int) -> None:
    probs = torch.softmax(torch.randn(6, generator=torch.Generator().manual_seed(seed)), dim=-1)
    for draft in range(6):
        # P(x) = p(d) [x = d] + (1 - p(d)) residual(x): the target distribution itself.
        accepted = torch.zeros(6)
        accepted[draft] = probs[draft]
        mixed = accepted + (1 - probs[draft]) * residual(probs, draft)
        assert torch.allclose(mixed, probs, atol=1e-6)
        assert float(residual(probs, draft)[draft]) == 0.0


def test_the_acceptance_rule_samples_the_target_distribution() -> None:
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    generator = torch.Generator().manual_seed(0)
    draws = 20_000
    counts = torch.zeros(4)
    accepted = 0
    for _ in range(draws):
        token, is_draft = accept_draft(probs, 1, generator)
        counts[token] += 1
        accepted += is_draft
        assert is_draft == (token == 1)  # the residual never holds the draft
    assert torch.allclose(counts / draws, probs, atol=0.015)
    assert abs(accepted / draws - 0.3) < 0.015  # a draft is kept with probability p(draft)


def test_a_certain_draft_is_always_accepted_and_an_impossible_one_never() -> None:
    generator = torch.Generator().manual_seed(1)
    assert accept_draft(torch.tensor([0.0, 1.0, 0.0]), 1, generator) == (1, True)
    token, is_draft = accept_draft(torch.tensor([0.0, 0.0, 1.0]), 1, generator)
    assert (token, is_draft) == (2, False)


def test_token_probs_applies_temperature_and_the_nucleus() -> None:
    logits = torch.log(torch.tensor([0.6, 0.3, 0.1]))
    assert torch.allclose(token_probs(logits.clone(), 1.0, 1.0), torch.tensor([0.6, 0.3, 0.1]))
    nucleus = token_probs(logits.clone(), 1.0, 0.8)
    assert torch.allclose(nucleus, torch.tensor([2 / 3, 1 / 3, 0.0]))


class _Matcher:
    """Stands in for a ``GrammarMatcher`` whose grammar forces ``forced`` next."""

    def __init__(self, forced: str) -> None:
        self.forced = forced

    def find_jump_forward_string(self) -> str:
        return self.forced


class _Tokenizer:
    """Characters are tokens, except that ``ab`` and ``",`` are one token each."""

    merges: ClassVar[dict[str, int]] = {'",': 100, "ab": 101}

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        ids, i = [], 0
        while i < len(text):
            if text[i : i + 2] in self.merges:
                ids.append(self.merges[text[i : i + 2]])
                i += 2
            else:
                ids.append(ord(text[i]))
                i += 1
        return ids

    def decode(self, ids: list[int]) -> str:
        names = {v: k for k, v in self.merges.items()}
        return "".join(names.get(i, chr(i)) for i in ids)


def test_the_forced_draft_is_the_tokenizers_split_after_the_sampled_token() -> None:
    tokenizer = _Tokenizer()
    # The sampled token stays a token of its own: the seam's split of the rest is the draft.
    assert forced_draft(_Matcher('ab"'), tokenizer, ord("x"), 8) == [101, ord('"')]
    # The tokenizer would merge the sampled '"' with the forced ',': the model chose another
    # split already, so the forced text is tokenized on its own.
    assert forced_draft(_Matcher(',"k'), tokenizer, ord('"'), 8) == [ord(","), ord('"'), ord("k")]
    # Before the first token there is no seam.
    assert forced_draft(_Matcher('",'), tokenizer, None, 8) == [100]


def test_the_forced_draft_is_bounded_and_empty_when_nothing_is_forced() -> None:
    tokenizer = _Tokenizer()
    assert forced_draft(_Matcher(""), tokenizer, ord("x"), 8) == []
    assert forced_draft(_Matcher("xyz"), tokenizer, ord("x"), 2) == [ord("x"), ord("y")]
    assert forced_draft(_Matcher("xyz"), tokenizer, ord("x"), 0) == []
    assert len(forced_draft(_Matcher("x" * 100), tokenizer, None, 1000)) == MAX_FORCED_DRAFT
