"""Prometheus metrics of one app instance, in a registry of its own (no process-wide state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320, 600)


class Metrics:
    """Requests, latencies, first tokens, tokens, invalid outputs, retries, slots, truncations."""

    def __init__(self) -> None:
        """Create the collectors in a fresh registry."""
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "omost_llm_requests",
            "HTTP requests by route and status code.",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "omost_llm_request_latency_seconds",
            "Time to the complete answer, by route.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.first_token = Histogram(
            "omost_llm_time_to_first_token_seconds",
            "Time from request to the first generated text.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "omost_llm_tokens",
            "Tokens processed, by kind (prompt, completion).",
            ["kind"],
            registry=self.registry,
        )
        self.invalid_outputs = Counter(
            "omost_llm_invalid_outputs",
            "Backend answers that were not valid canvases.",
            registry=self.registry,
        )
        self.retries = Counter(
            "omost_llm_retries",
            "Generations retried with the parse error fed back.",
            registry=self.registry,
        )

        self.running = Gauge(
            "omost_llm_running_generations",
            "Generations holding one of the max_concurrency slots.",
            registry=self.registry,
        )
        self.truncated_histories = Counter(
            "omost_llm_truncated_histories",
            "Conversations sent without their older turns to fit the model's context.",
            registry=self.registry,
        )

        self.draft_tokens = Counter(
            "omost_llm_draft_tokens",
            "Prompt-lookup draft tokens verified by the in-process backend, by result "
            "(accepted, rejected).",
            ["result"],
            registry=self.registry,
        )
        self.forced_tokens = Counter(
            "omost_llm_forced_tokens",
            "Jump-forward draft tokens (text forced by the grammar) the in-process backend"
            " accepted, each appended without a forward pass of its own.",
            registry=self.registry,
        )

        self.key_requests = Counter(
            "omost_llm_key_requests",
            "Requests per API key name, by outcome (allowed, rate_limited).",
            ["key", "outcome"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        """The exposition text for ``GET /metrics``."""
        return generate_latest(self.registry)
