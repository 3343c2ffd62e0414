"""The concatenated inputs of recent step-batch compositions, dropped when a job of theirs ends.

A composition is the jobs of one model call (their per-pass inputs, by identity, in order) plus
what else shapes the call (image counts, which jobs are masked). The same composition at the next
step reuses what was built for it (concatenated text, regional masks), so a step builds nothing;
a join, a leave or another latent shape makes another. At most ``kept`` compositions are held,
least recently used out first, and one whose job has ended (its per-pass inputs are gone) is
dropped at the next lookup, so a finished job's masks do not outlive it.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

#: Batch compositions kept: the current one and a few others (another latent shape's batch, the
#: composition before a join). Memory is at most this many times one batch's inputs and masks.
COMPOSITIONS_KEPT = 4

Part = TypeVar("Part")
Built = TypeVar("Built")


class CompositionCache(Generic[Part, Built]):
    """What was built for each recent composition of parts (held weakly), at most ``kept``.

    Args:
        kept: Compositions held at most.
    """

    def __init__(self, kept: int = COMPOSITIONS_KEPT) -> None:
        if kept < 1:
            raise ValueError(f"kept must be at least 1, got {kept}")
        self.kept = kept
        self._entries: OrderedDict[Hashable, tuple[list[weakref.ref[Part]], Built]]
        self._entries = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, parts: Sequence[Part], extra: Hashable, build: Callable[[], Built]) -> Built:
        """The value built for ``parts`` (by identity, in order) and ``extra``, built when new.

        Args:
            parts: The jobs' per-pass inputs (weakly referenceable).
            extra: The rest of the composition's key (image counts, mask flags).
            build: Builds the value of a new composition.

        Returns:
            The composition's value.
        """
        # Entries with an ended part go first, so an id reused by a new object never matches.
        for key in [k for k, (refs, _) in self._entries.items() if any(r() is None for r in refs)]:
            del self._entries[key]
        key = (tuple(id(part) for part in parts), extra)
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            return found[1]
        built = build()
        self._entries[key] = ([weakref.ref(part) for part in parts], built)
        while len(self._entries) > self.kept:
            self._entries.popitem(last=False)
        return built

    def clear(self) -> None:
        """Forget every composition."""
        self._entries.clear()
