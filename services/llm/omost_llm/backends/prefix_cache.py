"""The KV cache of the last generation, kept for the next one's shared prompt prefix.

Every request starts with the same system prompt (in ``json`` mode it carries the canvas schema,
about 2,000 tokens), and an edit turn repeats the conversation before it. The in-process backend
runs one generation at a time, so it keeps the cache of the last one with the tokens it holds;
the next generation starts from the longest common prefix and feeds only the rest, as vLLM's
prefix caching does. The cache is handed over, not copied: a generation that fails leaves none.

An edit turn sent as a chat history shares the previous turn's prompt and, up to the first token
the model split otherwise than the tokenizer splits the answer's text, the answer. Splicing the
kept tokens in for that text would reuse all of it, but it changes the prompt's tokens and so,
measured on SmolLM2, the canvas a greedy model writes; it saves a fraction of a second on one
CPU thread (docs/benchmarks.md), so the prompt is always the tokenizer's split.

Memory is one cache: at most the model's context of tokens (about 50 KB per token for SmolLM2,
128 KB for a Llama-3-8B), held between requests.
"""

from __future__ import annotations

from typing import Any


class PrefixCache:
    """One KV cache and the token ids it holds."""

    def __init__(self) -> None:
        """Start empty."""
        self._ids: list[int] = []
        self._cache: Any = None

    def take(self, prompt_ids: list[int]) -> tuple[Any, int]:
        """Hand the kept cache over, cut to its common prefix with ``prompt_ids``.

        At least the prompt's last token is left to feed, so the first forward pass has logits.

        Returns:
            A ``transformers`` ``DynamicCache`` (a new one when nothing is shared) and the
            number of prompt tokens it already holds.
        """
        from transformers import DynamicCache

        cache, ids = self._cache, self._ids
        self._cache, self._ids = None, []
        shared = 0
        most = min(len(ids), len(prompt_ids) - 1)
        while shared < most and ids[shared] == prompt_ids[shared]:
            shared += 1
        if cache is None or shared == 0:
            return DynamicCache(), 0
        extra = cache.get_seq_length() - shared
        if extra > 0:
            cache.crop(-extra)  # transformers 5: a negative count removes that many
        return cache, shared

    def keep(self, ids: list[int], cache: Any) -> None:
        """Keep ``cache``, which holds exactly the tokens ``ids``, for the next generation."""
        self._ids, self._cache = ids, cache
