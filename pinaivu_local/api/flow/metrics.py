"""Prometheus metrics of one server: a registry of its own (no process-global state)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pinaivu_local.engine.model_pool import ModelStatus
from pinaivu_local.requestlog.records import FinishedRequest

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class _PoolCollector(Collector):
    """Queue depth and running sequences per model, read at scrape time."""

    def __init__(self, statuses: Callable[[], list[ModelStatus]]) -> None:
        self._statuses = statuses

    def collect(self) -> Iterable[Metric]:
        running = GaugeMetricFamily("pinaivu_running_sequences", "Sequences generating now", labels=["model"])
        queued = GaugeMetricFamily("pinaivu_queue_depth", "Requests waiting for a sequence", labels=["model"])
        ready = GaugeMetricFamily("pinaivu_model_ready", "1 when the model serves requests", labels=["model"])
        failures = CounterMetricFamily(
            "pinaivu_engine_failures", "Engine steps or threads that failed", labels=["model"]
        )
        restarts = CounterMetricFamily(
            "pinaivu_engine_restarts", "Times an engine reset itself after a failure", labels=["model"]
        )
        for status in self._statuses():
            running.add_metric([status.id], status.running)
            queued.add_metric([status.id], status.queued)
            ready.add_metric([status.id], 1 if status.state == "ready" else 0)
            failures.add_metric([status.id], status.failures)
            restarts.add_metric([status.id], status.restarts)
        return [running, queued, ready, failures, restarts]


class Metrics:
    """Counters and histograms updated by the HTTP layer; rendered for /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pinaivu_requests",
            "Inference requests by model, status and key id",
            ["model", "status", "key"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "pinaivu_tokens", "Tokens in (prompt) and out (completion)", ["model", "direction"], registry=self.registry
        )
        self.first_token = Histogram(
            "pinaivu_time_to_first_token_seconds",
            "Time to first token",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.duration = Histogram(
            "pinaivu_request_duration_seconds",
            "Total time of inference requests",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "pinaivu_rate_limited", "Requests refused with 429", ["key"], registry=self.registry
        )
        self.unavailable = Counter(
            "pinaivu_unavailable",
            "Requests refused with 503 (queue full or engine down)",
            ["model"],
            registry=self.registry,
        )
        self.replays = Counter(
            "pinaivu_replays",
            "Verification replays (also counted as requests and tokens)",
            ["model"],
            registry=self.registry,
        )

    def watch_models(self, statuses: Callable[[], list[ModelStatus]]) -> None:
        """Report the pool's load at each scrape."""
        self.registry.register(_PoolCollector(statuses))

    def observe_response(self, *, model: str, status: int, key: str) -> None:
        """Any answer to an inference request, admitted or not."""
        self.requests.labels(model, str(status), key).inc()
        if status == 429:
            self.rate_limited.labels(key).inc()
        elif status == 503:
            self.unavailable.labels(model).inc()

    def observe_record(self, record: FinishedRequest) -> None:
        """Tokens and timings of a request that ran (replays are counted apart too)."""
        if record.replay_of is not None:
            self.replays.labels(record.model_id).inc()
        self.tokens.labels(record.model_id, "in").inc(record.prompt_tokens)
        self.tokens.labels(record.model_id, "out").inc(record.completion_tokens)
        if record.ttft_ms is not None:
            self.first_token.labels(record.model_id).observe(record.ttft_ms / 1000)
        if record.total_ms is not None:
            self.duration.labels(record.model_id).observe(record.total_ms / 1000)

    def render(self) -> bytes:
        """The text exposition format."""
        return bytes(generate_latest(self.registry))
