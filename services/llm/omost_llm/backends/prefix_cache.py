"""The KV cache of the last generation, kept for the next one's shared prompt prefix.

Every request starts with the same system prompt (in ``json`` mode it carries the canvas schema,
about 2,000 tokens), and an edit turn repeats the conversation before it. The in-process backend
runs one generation at a time, so it keeps the cache of the last one with the tokens it holds;
the next generation starts from the longest common prefix and feeds only the rest, as vLLM's
prefix caching does. The cache is handed over, not copied: a generation that fails leaves none.

An edit turn sends the previous answer back as text, and the chat template's tokenization of it
is not always the tokens the model wrote (a model may split ``"},{"`` otherwise than the
tokenizer does), which would end the common prefix at the first such place. So the prompt's ids
are spliced: when the prompt's text starts with the kept tokens' text, the kept tokens stand for
it and only the rest is tokenized, and the edit turn's prompt read covers only the new turn.

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

    def splice(self, text: str, ids: list[int], tokenizer: Any) -> list[int]:
        """The prompt's token ids, the kept tokens first where the prompt's text starts with theirs.

        Args:
            text: The templated prompt.
            ids: Its tokenization.
            tokenizer: The model's tokenizer.

        Returns:
            The kept tokens followed by the tokenization of the rest of ``text``, or ``ids``
            when the kept tokens' text is not where ``text`` starts (or the tokenizer's
            decoding does not give back the text, so the splice could not be checked).
        """
        kept = self._ids
        if not kept:
            return ids
        kept_text = _decode(tokenizer, kept)
        if kept_text.endswith("\ufffd") or not text.startswith(kept_text) or text == kept_text:
            return ids
        rest: list[int] = tokenizer(text[len(kept_text) :], add_special_tokens=False)["input_ids"]
        spliced = kept + rest
        # Same text, other split: the model reads the same prompt, the cache holds its start.
        return spliced if _decode(tokenizer, spliced) == _decode(tokenizer, ids) else ids

    def keep(self, ids: list[int], cache: Any) -> None:
        """Keep ``cache``, which holds exactly the tokens ``ids``, for the next generation."""
        self._ids, self._cache = ids, cache


def _decode(tokenizer: Any, ids: list[int]) -> str:
    return str(tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False))
