"""Jump-forward decoding: append the text the grammar forces, in one forward pass.

Keywords, punctuation and field names are forced by the canvas grammar; once the matcher says
which bytes must come next (``find_jump_forward_string``), their tokens can be appended without
sampling. The boundary is handled as SGLang does: the last sampled token is rolled back and its
text re-tokenized together with the forced text, so that the seam gets the tokens the model's
tokenizer would use (``"``, then ``,"tags":"`` is one token sequence, not two). Every appended
token is accepted into the matcher; the jump stops at the first one the grammar refuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Jump:
    """Tokens that jump-forward appends.

    Attributes:
        tokens: The tokens, already accepted by the matcher.
        replaces_last: They replace the last sampled token (re-tokenized at the seam) rather
            than follow it.
    """

    tokens: list[int]
    replaces_last: bool


def jump_forward(matcher: Any, tokenizer: Any, last_token: int, room: int) -> Jump | None:
    """Find and accept the tokens of the forced continuation after ``last_token``.

    Args:
        matcher: The ``xgrammar.GrammarMatcher``, ``last_token`` accepted last.
        tokenizer: The model's tokenizer.
        last_token: The token sampled last (not yet fed to the model).
        room: Most tokens the answer may still grow by.

    Returns:
        The jump, or ``None`` when nothing is forced or nothing forced could be appended (the
        matcher is then as it was).
    """
    forced: str = matcher.find_jump_forward_string()
    if not forced or room <= 0:
        return None
    last_text = str(tokenizer.decode([last_token]))
    # A token that ends inside a character cannot be re-tokenized as text: append after it.
    seam = "\ufffd" not in last_text
    if seam:
        matcher.rollback(1)
    text = last_text + forced if seam else forced
    ids: list[int] = tokenizer.encode(text, add_special_tokens=False)
    accepted: list[int] = []
    for token in ids[: room + 1 if seam else room]:
        if not matcher.accept_token(token):
            break  # never past what the grammar allows
        accepted.append(token)
    covered = str(tokenizer.decode(accepted))
    if seam and (len(covered) <= len(last_text) or not covered.startswith(last_text)):
        # The re-tokenization does not reproduce the sampled token's text, or adds nothing
        # to it: keep that token.
        if accepted:
            matcher.rollback(len(accepted))
        if not matcher.accept_token(last_token):
            raise RuntimeError(f"the grammar refused token {last_token} it had accepted")
        return None
    if not accepted:
        return None
    return Jump(accepted, replaces_last=seam)
