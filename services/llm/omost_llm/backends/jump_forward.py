"""Jump-forward decoding: the text the grammar forces, proposed as a draft.

Keywords, punctuation and field names are forced by the canvas grammar; once the matcher says
which characters must come next (``find_jump_forward_string``), their tokens are a draft that the
next forward pass verifies like a prompt-lookup draft (grammar mask at every position, greedy
keeps the tokens equal to the masked argmax, sampling uses the speculative acceptance rule). The
characters are certain but their tokenization is not: appending the tokenizer's split of the
forced text unverified would change the canvas a greedy model writes, and the distribution of a
sampled one. Verified, the answer is the one decoding without jump-forward gives, and a forced
text the model splits differently costs one verification, not a different canvas.

The seam is handled as SGLang does, by re-tokenizing the last sampled token's text together with
the forced text: when the tokenizer keeps that token as is, its split of the rest is the draft
(the split the model saw in training); when it would merge the token into the forced text, the
model has already chosen another split, and the forced text is tokenized on its own.
"""

from __future__ import annotations

from typing import Any

# Most forced tokens drafted per forward pass: bounds the pass's size (and the work lost when
# the model splits the forced text differently) where the grammar forces a long run of text.
MAX_FORCED_DRAFT = 32


def forced_draft(matcher: Any, tokenizer: Any, last_token: int | None, most: int) -> list[int]:
    """The tokens of the text the grammar forces next, as a draft to verify.

    Args:
        matcher: The ``xgrammar.GrammarMatcher``, ``last_token`` accepted last; left unchanged.
        tokenizer: The model's tokenizer.
        last_token: The token sampled last (``None`` before the first one).
        most: Most draft tokens (also bounded by ``MAX_FORCED_DRAFT``).

    Returns:
        The draft (empty when nothing is forced).
    """
    most = min(most, MAX_FORCED_DRAFT)
    if most <= 0:
        return []
    forced: str = matcher.find_jump_forward_string()
    if not forced:
        return []
    ids: list[int] | None = None
    if last_token is not None:
        last_text = str(tokenizer.decode([last_token]))
        # A token that ends inside a character cannot be re-tokenized as text.
        if "\ufffd" not in last_text:
            seam: list[int] = tokenizer.encode(last_text + forced, add_special_tokens=False)
            if seam[:1] == [last_token]:
                ids = seam[1:]
    if ids is None:
        ids = tokenizer.encode(forced, add_special_tokens=False)
    return ids[:most]
