"""Test helpers: match text against an xgrammar grammar byte by byte, and walk grammars at random.

The tokenizer is 256 one-byte tokens plus a stop token, so any UTF-8 text is a token sequence and
the token mask at each step is exactly the set of bytes the grammar allows next.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import xgrammar as xgr
from omost_schema import Canvas

STOP_TOKEN = 256
# Bytes that end a string, a list, a call or a line: preferring them keeps random walks short.
_CLOSING = frozenset(b"\"')]}\n")


def byte_compiler() -> xgr.GrammarCompiler:
    """A compiler whose vocabulary is the 256 bytes plus a stop token (id 256)."""
    vocab = [bytes([i]) for i in range(256)] + [b"</s>"]
    info = xgr.TokenizerInfo(vocab, stop_token_ids=[STOP_TOKEN])
    return xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)


def accepts(compiled: xgr.CompiledGrammar, text: str) -> bool:
    """Whether the grammar matches the whole of ``text``."""
    matcher = xgr.GrammarMatcher(compiled, terminate_without_stop_token=True)
    return matcher.accept_string(text.encode()) and matcher.is_completed()


def _allowed(matcher: xgr.GrammarMatcher, bitmask: Any) -> list[int]:
    matcher.fill_next_token_bitmask(bitmask)
    words = bitmask.numpy()[0].astype(np.uint32)
    bits = (words[:, None] >> np.arange(32, dtype=np.uint32)) & 1
    return [int(i) for i in np.flatnonzero(bits.reshape(-1)[: STOP_TOKEN + 1])]


def random_walk(compiled: xgr.CompiledGrammar, rng: random.Random, max_steps: int) -> str | None:
    """Sample one string of the grammar by picking random allowed bytes.

    Closing bytes are preferred, more and more as the walk grows, so that strings, lists and
    programs end. Returns ``None`` if the walk has not ended after ``max_steps`` bytes.

    The bytes are decoded with replacement: xgrammar 0.2.8 lets overlong and surrogate UTF-8
    sequences (``E0 80..``, ``ED A0..``, ``F0 80..``) through a JSON string ``pattern``; a
    detokeniser turns them into U+FFFD, which is ordinary text to a canvas.
    """
    matcher = xgr.GrammarMatcher(compiled)
    bitmask = xgr.allocate_token_bitmask(1, STOP_TOKEN + 1)
    out = bytearray()
    for step in range(max_steps):
        allowed = _allowed(matcher, bitmask)
        prefer_closing = 0.2 + 0.7 * step / max_steps
        if STOP_TOKEN in allowed and (allowed == [STOP_TOKEN] or rng.random() < prefer_closing / 2):
            return out.decode(errors="replace")
        allowed = [t for t in allowed if t != STOP_TOKEN]
        closing = [t for t in allowed if t in _CLOSING]
        choices = closing if closing and rng.random() < prefer_closing else allowed
        token = rng.choice(choices)
        assert matcher.accept_token(token)
        out.append(token)
    return None


def _restrict_text(text: str, allowed: Callable[[str], bool]) -> str:
    return "".join(c if allowed(c) else "?" for c in text)


def restrict(canvas: Canvas, allowed: Callable[[str], bool]) -> Canvas:
    """Map a random canvas into what a grammar can write.

    Characters for which ``allowed`` is false become ``?``, and distances are rounded to two
    decimals (at least 0.01), as Omost writes them.
    """
    data = canvas.model_dump()
    descriptions = [data["global_description"], *data["local_descriptions"]]
    for description in descriptions:
        for key, value in description.items():
            if key == "detailed_descriptions":
                description[key] = [_restrict_text(item, allowed) for item in value]
            elif key == "distance_to_viewer":
                description[key] = max(round(value, 2), 0.01)
            elif isinstance(value, str):
                description[key] = _restrict_text(value, allowed)
    return Canvas.model_validate(data)
