"""Counters of a worker's rendering for ``/metrics``: step batching and the text-encoding cache.

Workers are separate processes, so they keep their counters in the Redis metrics hash, which the
API turns into metrics (``omost_renderer.metrics``). These counters grow in the worker's own
objects, the ``StepBatch`` driver (``calls_made``, ``rows_run``, ``renders_stepped``, ``splits``)
and the pipeline's ``text_cache`` (``hits``, ``misses``; absent on renderers without one), and are
added to the hash as deltas at each heartbeat. A delta that could not be written is kept for the
next heartbeat: never lost, never counted twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

#: Metrics hash field of each ``StepBatch`` counter.
BATCH_FIELDS: Mapping[str, str] = {
    "calls_made": "batch:calls",
    "rows_run": "batch:rows",
    "renders_stepped": "batch:renders",
    "splits": "batch:splits",
}
#: Metrics hash field of each text-cache counter.
TEXT_CACHE_FIELDS: Mapping[str, str] = {"hits": "text_cache:hits", "misses": "text_cache:misses"}
#: Sizes of the text cache a worker puts in its health key (gauges, not summed over workers).
TEXT_CACHE_SIZES = ("entries", "bytes")


def _count(source: object, name: str) -> int:
    value = getattr(source, name, 0)
    return value if isinstance(value, int) else 0


class RenderCounters:
    """Deltas of the batch and text-cache counters since they were last reported; thread-safe."""

    def __init__(self, batch: Callable[[], object], renderer: Callable[[], object]) -> None:
        """Read the counters through ``batch`` (the step driver) and ``renderer`` (the pipeline).

        Both are read at each report, so a driver or pipeline replaced between jobs is followed
        (its counters start again from zero).
        """
        self._batch = batch
        self._renderer = renderer
        self._lock = threading.Lock()
        self._reported: dict[str, int] = {}

    def _totals(self) -> dict[str, int]:
        batch = self._batch()
        totals = {field: _count(batch, name) for name, field in BATCH_FIELDS.items()}
        cache = getattr(self._renderer(), "text_cache", None)
        totals.update({field: _count(cache, name) for name, field in TEXT_CACHE_FIELDS.items()})
        return totals

    def take(self) -> dict[str, int]:
        """The growth of each counter since the last report, marked reported (zeros left out)."""
        with self._lock:
            deltas: dict[str, int] = {}
            for field, total in self._totals().items():
                before = self._reported.get(field, 0)
                # A counter below what was reported belongs to a new driver or pipeline.
                delta = total - before if total >= before else total
                self._reported[field] = total
                if delta:
                    deltas[field] = delta
            return deltas

    def give_back(self, deltas: Mapping[str, int]) -> None:
        """Report ``deltas`` again next time (writing them to Redis failed)."""
        with self._lock:
            for field, delta in deltas.items():
                self._reported[field] = self._reported.get(field, 0) - delta

    def text_cache_sizes(self) -> dict[str, int]:
        """The text cache's ``entries`` and ``bytes`` now (empty without a cache)."""
        cache = getattr(self._renderer(), "text_cache", None)
        if cache is None:
            return {}
        return {name: _count(cache, name) for name in TEXT_CACHE_SIZES}
