"""A bounded LRU cache of encoded region texts, so an edit or a repeated canvas skips the encoders.

An edit changes one region of a canvas; a retry or a second seed repeats the whole canvas. The
text encoders' output depends only on the model and the exact token ids (or text) encoded, so the
pipelines key their per-region encodings by ``(model name, what was encoded)`` and keep the
resulting tensors here, on the device that made them. The cache is bounded by the bytes of the
tensors it holds (``max_bytes``); the least recently used entries leave first, and an entry larger
than the whole bound is never kept. ``max_bytes=0`` turns it off (every lookup encodes).

Cached tensors are shared between renders: callers must treat them as read-only (the pipelines
only concatenate, pad and copy them). Not thread-safe: one worker loop renders at a time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

import torch

#: The loader's default bound: 256 MiB of encoded text.
DEFAULT_TEXT_CACHE_BYTES = 256 * 1024 * 1024

#: What the cache holds per key: one tensor or a tuple of tensors.
Encoded = TypeVar("Encoded", bound=torch.Tensor | tuple[torch.Tensor, ...])


def _nbytes(value: torch.Tensor | tuple[torch.Tensor, ...]) -> int:
    tensors = value if isinstance(value, tuple) else (value,)
    return sum(t.numel() * t.element_size() for t in tensors)


class TextEncodingCache:
    """Encoded texts by key, least recently used first out, at most ``max_bytes`` of tensors.

    Args:
        max_bytes: Bound on the bytes of the tensors held; 0 keeps nothing.

    Attributes:
        hits: Lookups answered from the cache.
        misses: Lookups that ran the encoder.
    """

    def __init__(self, max_bytes: int = DEFAULT_TEXT_CACHE_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._bytes = 0
        self._entries: OrderedDict[Hashable, tuple[torch.Tensor | tuple[torch.Tensor, ...], int]]
        self._entries = OrderedDict()

    @property
    def entries(self) -> int:
        """Encodings held."""
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """Bytes of the tensors held (at most ``max_bytes``)."""
        return self._bytes

    def get_or_encode(self, key: Hashable, encode: Callable[[], Encoded]) -> Encoded:
        """The cached encoding of ``key``, or ``encode()``'s result, kept when it fits.

        Args:
            key: ``(model name, kind, exact ids or text)``: equal keys must encode equally.
            encode: Runs the text encoder(s).

        Returns:
            The encoding (shared: read-only).
        """
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            value: Encoded = found[0]  # type: ignore[assignment]
            return value
        self.misses += 1
        value = encode()
        size = _nbytes(value)
        if size <= self.max_bytes:
            self._entries[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped
        return value

    def clear(self) -> None:
        """Drop every entry (the counters stay)."""
        self._entries.clear()
        self._bytes = 0
