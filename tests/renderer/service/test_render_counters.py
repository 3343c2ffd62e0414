"""The batch and text-cache counters a worker reports: deltas, never lost, never counted twice."""

from __future__ import annotations

from types import SimpleNamespace

from omost_renderer.worker.render_counters import RenderCounters


def test_counters_are_reported_as_deltas_and_a_failed_report_is_given_back() -> None:
    batch = SimpleNamespace(calls_made=2, rows_run=8, renders_stepped=4, splits=0)
    renderer = SimpleNamespace(text_cache=SimpleNamespace(hits=1, misses=3, entries=3, bytes=96))
    counters = RenderCounters(lambda: batch, lambda: renderer)
    first = counters.take()
    assert first == {
        "batch:calls": 2,
        "batch:rows": 8,
        "batch:renders": 4,
        "text_cache:hits": 1,
        "text_cache:misses": 3,
    }
    assert counters.take() == {}  # nothing new
    batch.calls_made, renderer.text_cache.hits = 5, 4
    second = counters.take()
    assert second == {"batch:calls": 3, "text_cache:hits": 3}
    counters.give_back(second)  # writing them to Redis failed
    batch.calls_made = 6
    assert counters.take() == {"batch:calls": 4, "text_cache:hits": 3}
    assert counters.text_cache_sizes() == {"entries": 3, "bytes": 96}


def test_a_new_driver_counts_from_zero_and_a_renderer_without_cache_reports_none() -> None:
    holder = {"batch": SimpleNamespace(calls_made=10)}
    counters = RenderCounters(lambda: holder["batch"], lambda: object())
    assert counters.take() == {"batch:calls": 10}
    holder["batch"] = SimpleNamespace(calls_made=3)  # a new driver (the renderer was replaced)
    assert counters.take() == {"batch:calls": 3}
    assert counters.text_cache_sizes() == {}
