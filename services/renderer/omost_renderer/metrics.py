"""Prometheus exposition of the queue: gauges read from Redis, histograms the workers keep there.

Workers are separate processes, so they keep their counters in a Redis hash; the API turns that
hash into metrics on each scrape, in a registry built for the scrape (no global registry).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from omost_renderer.job_queue import constants
from omost_renderer.job_queue.api_queue import QueueStats
from omost_renderer.worker.render_counters import BATCH_FIELDS, TEXT_CACHE_FIELDS

#: Rendering counters the workers keep: (metric, metrics hash field, documentation).
_RENDER_COUNTERS = (
    (
        "omost_render_model_calls",
        BATCH_FIELDS["calls_made"],
        "Denoiser calls the workers made (one per step of a batch of renders).",
    ),
    (
        "omost_render_renders_stepped",
        BATCH_FIELDS["renders_stepped"],
        "Render steps those calls advanced; divided by the calls, the mean renders per call.",
    ),
    (
        "omost_render_batch_rows",
        BATCH_FIELDS["rows_run"],
        "Model batch rows those calls carried (two per image with classifier-free guidance).",
    ),
    (
        "omost_render_batch_splits",
        BATCH_FIELDS["splits"],
        "Shared model calls that failed and were retried one render at a time.",
    ),
    (
        "omost_render_text_cache_hits",
        TEXT_CACHE_FIELDS["hits"],
        "Prompt encodings the workers' text caches answered.",
    ),
    (
        "omost_render_text_cache_misses",
        TEXT_CACHE_FIELDS["misses"],
        "Prompt encodings that ran the text encoders.",
    ),
)


def _histogram(
    name: str, documentation: str, counters: dict[str, str], buckets: tuple[float, ...]
) -> HistogramMetricFamily:
    cumulative = 0
    rows: list[tuple[str, float]] = []
    for bound in buckets:
        cumulative += int(counters.get(f"{name}:bucket:{bound!r}", "0"))
        rows.append((repr(bound), float(cumulative)))
    count = int(counters.get(f"{name}:count", "0"))
    rows.append(("+Inf", float(count)))
    return HistogramMetricFamily(
        f"omost_render_{name}_seconds",
        documentation,
        buckets=rows,
        sum_value=float(counters.get(f"{name}:sum", "0")),
    )


class _QueueCollector(Collector):
    def __init__(self, stats: QueueStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        yield GaugeMetricFamily(
            "omost_render_queue_depth", "Jobs queued or running (stream length).", stats.depth
        )
        yield GaugeMetricFamily(
            "omost_render_pending",
            "Entries delivered to a worker and not yet acked.",
            stats.pending,
        )
        yield GaugeMetricFamily(
            "omost_render_dead_letters", "Entries in the dead-letter stream.", stats.dead_letters
        )
        yield GaugeMetricFamily(
            "omost_render_workers", "Workers with a live health key.", stats.workers
        )
        yield CounterMetricFamily(
            "omost_render_redeliveries",
            "Jobs taken over from a worker that stopped heartbeating.",
            float(stats.counters.get("redeliveries", "0")),
        )
        errors = CounterMetricFamily(
            "omost_render_worker_errors",
            "Background failures of the workers, by component (queue, storage, cleanup ...).",
            labels=["component"],
        )
        for field, value in sorted(stats.counters.items()):
            if field.startswith("errors:"):
                errors.add_metric([field.removeprefix("errors:")], float(value))
        yield errors
        webhooks = CounterMetricFamily(
            "omost_render_webhook_deliveries",
            "Webhook delivery attempts by outcome: delivered, retried (failed, tried again"
            " later), dropped (retries spent, or no secret or URL allowed any more).",
            labels=["outcome"],
        )
        for outcome in ("delivered", "retried", "dropped"):
            webhooks.add_metric([outcome], float(stats.counters.get(f"webhooks:{outcome}", "0")))
        yield webhooks
        yield from _key_metrics(stats.counters)
        for name, field, documentation in _RENDER_COUNTERS:
            yield CounterMetricFamily(name, documentation, float(stats.counters.get(field, "0")))
        yield _histogram(
            "wait",
            "Time from enqueue to the start of an attempt.",
            stats.counters,
            constants.WAIT_BUCKETS_S,
        )
        yield _histogram(
            "run", "Time from start to end of an attempt.", stats.counters, constants.RUN_BUCKETS_S
        )


def _key_metrics(counters: dict[str, str]) -> Iterator[Metric]:
    """Per-API-key counters the quota scripts keep (by key name, never the key)."""
    requests = CounterMetricFamily(
        "omost_render_key_requests", "Requests counted per API key.", labels=["key"]
    )
    refused = CounterMetricFamily(
        "omost_render_key_refused",
        "Requests refused with 429 per API key, by limit (requests, jobs, budget).",
        labels=["key", "limit"],
    )
    work = CounterMetricFamily(
        "omost_render_key_megapixel_steps",
        "Rendered megapixel-steps charged per API key.",
        labels=["key"],
    )
    for field, value in sorted(counters.items()):
        kind, _, rest = field.partition(":")
        if kind == "key_requests":
            requests.add_metric([rest], float(value))
        elif kind == "key_refused":
            name, _, limit = rest.rpartition(":")
            refused.add_metric([name, limit], float(value))
        elif kind == "key_pixel_steps":
            work.add_metric([rest], float(value) / 1e6)
    yield from (requests, refused, work)


def render_metrics(stats: QueueStats) -> bytes:
    """Return the Prometheus text exposition of ``stats``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_QueueCollector(stats))
    return generate_latest(registry)
