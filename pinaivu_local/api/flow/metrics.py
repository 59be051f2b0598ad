"""Prometheus metrics of one server: a registry of its own (no process-global state)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pinaivu_local.engine.model_pool import ModelStatus
from pinaivu_local.requestlog.records import FinishedRequest

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# vLLM's time-per-output-token buckets, with finer ones below 10 ms: a small model on a GPU decodes faster.
TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5)
QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# The node label of a request this process computed (a gateway's nodes carry their names from the nodes file).
THIS_BOX = "local"


class _PoolCollector(Collector):
    """Queue depth, running sequences and KV cache usage per model, read at scrape time."""

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
        kv_usage = GaugeMetricFamily(
            "pinaivu_kv_cache_usage_ratio", "Share of the KV cache's cells running sequences hold", labels=["model"]
        )
        for status in self._statuses():
            running.add_metric([status.id], status.running)
            queued.add_metric([status.id], status.queued)
            ready.add_metric([status.id], 1 if status.state == "ready" else 0)
            failures.add_metric([status.id], status.failures)
            restarts.add_metric([status.id], status.restarts)
            if status.kv_cells:
                kv_usage.add_metric([status.id], status.kv_cells_used / status.kv_cells)
        return [running, queued, ready, failures, restarts, kv_usage]


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
        # Per model and node (THIS_BOX without a fleet): what vLLM's dashboards chart (docs/operations.md).
        self.per_output_token = Histogram(
            "pinaivu_time_per_output_token_seconds",
            "Time per output token after the first, one observation per request (its mean)",
            ["model", "node"],
            buckets=TPOT_BUCKETS,
            registry=self.registry,
        )
        self.queue_time = Histogram(
            "pinaivu_queue_time_seconds",
            "Time a request waited for a sequence before its prompt was processed",
            ["model", "node"],
            buckets=QUEUE_BUCKETS,
            registry=self.registry,
        )
        self.prefix_queries = Counter(
            "pinaivu_prefix_cache_queries",
            "Requests whose prompt was looked up in the prefix cache",
            ["model", "node"],
            registry=self.registry,
        )
        self.prefix_hits = Counter(
            "pinaivu_prefix_cache_hits",
            "Requests whose prompt started from cached KV cells",
            ["model", "node"],
            registry=self.registry,
        )
        self.prefix_queried_tokens = Counter(
            "pinaivu_prefix_cache_queried_tokens",
            "Prompt tokens looked up in the prefix cache (vllm:prefix_cache_queries)",
            ["model", "node"],
            registry=self.registry,
        )
        self.prefix_cached_tokens = Counter(
            "pinaivu_prefix_cache_cached_tokens",
            "Prompt tokens whose KV cells came from the prefix cache (vllm:prefix_cache_hits)",
            ["model", "node"],
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

    def observe_record(self, record: FinishedRequest, *, cached_tokens: int | None = None) -> None:
        """Tokens and timings of a request that ran (replays are counted apart too); `cached_tokens`:
        its prompt tokens the prefix cache served, where its usage says (None: unknown, not counted)."""
        model, node = record.model_id, record.node or THIS_BOX
        if record.replay_of is not None:
            self.replays.labels(model).inc()
        self.tokens.labels(model, "in").inc(record.prompt_tokens)
        self.tokens.labels(model, "out").inc(record.completion_tokens)
        if record.ttft_ms is not None:
            self.first_token.labels(model).observe(record.ttft_ms / 1000)
        if record.total_ms is not None:
            self.duration.labels(model).observe(record.total_ms / 1000)
        if record.queue_ms is not None:
            self.queue_time.labels(model, node).observe(record.queue_ms / 1000)
        if record.ttft_ms is not None and record.total_ms is not None and record.completion_tokens > 1:
            decode_s = (record.total_ms - record.ttft_ms) / 1000
            self.per_output_token.labels(model, node).observe(decode_s / (record.completion_tokens - 1))
        if cached_tokens is not None and record.prompt_tokens > 0:
            self.prefix_queries.labels(model, node).inc()
            self.prefix_queried_tokens.labels(model, node).inc(record.prompt_tokens)
            if cached_tokens > 0:
                self.prefix_hits.labels(model, node).inc()
                self.prefix_cached_tokens.labels(model, node).inc(cached_tokens)

    def render(self) -> bytes:
        """The text exposition format."""
        return bytes(generate_latest(self.registry))
