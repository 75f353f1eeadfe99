"""Every Prometheus metric Shoal exports, in one place. Names are `shoal_*`; the k8s
PromQL (KEDA triggers, alerts, dashboard) may use only names defined here."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from engine import EngineAPI, EngineObserver

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
BATCH_TOKEN_BUCKETS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


class Metrics(EngineObserver):
    """The registry plus the engine hooks that feed it. One per app (no global state)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("shoal_requests", "HTTP requests by route, model and status code.",
                                ["route", "model", "status"], registry=r)
        self.request_seconds = Histogram("shoal_request_duration_seconds", "HTTP request latency.",
                                         ["route", "model"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("shoal_requests_in_flight", "HTTP requests being served now.", registry=r)
        self.rejections = Counter("shoal_rejections", "Requests refused before inference, by reason.",
                                  ["reason"], registry=r)
        self.batch_size = Histogram("shoal_batch_size", "Sequences per forward batch.", ["model"],
                                    buckets=BATCH_SIZE_BUCKETS, registry=r)
        self.batch_tokens = Histogram("shoal_batch_tokens", "Tokens per forward batch.", ["model"],
                                      buckets=BATCH_TOKEN_BUCKETS, registry=r)
        self.batch_seconds = Histogram("shoal_batch_duration_seconds", "Forward pass time per batch.", ["model"],
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("shoal_tokens", "Tokens processed by forward passes.", ["model"], registry=r)
        self.load_seconds = Histogram("shoal_model_load_duration_seconds", "Model load time by source tier.",
                                      ["model", "source"], buckets=LATENCY_BUCKETS, registry=r)
        self.loads = Counter("shoal_model_loads", "Model loads by model and source tier (disk, host).",
                             ["model", "source"], registry=r)
        self.load_failures = Counter("shoal_model_load_failures", "Model loads that failed.", ["model"], registry=r)
        self.evictions = Counter("shoal_model_evictions", "Models evicted from the device, by reason.",
                                 ["model", "reason"], registry=r)
        self.lookups = Counter("shoal_pool_lookups", "Model lookups by the device worker: hit (resident), "
                               "host (restored from the host tier) or miss (read from disk).", ["result"], registry=r)
        self.load_wait = Histogram("shoal_load_wait_seconds", "Time requests waited for their model to load.",
                                   ["model"], buckets=LATENCY_BUCKETS, registry=r)

    def attach(self, engine: EngineAPI) -> None:
        """Queue gauges read the engine at scrape time, so they are exact and never stale."""
        self.registry.register(_QueueCollector(engine))

    # EngineObserver hooks
    def batch_done(self, model: str, sequences: int, tokens: int, seconds: float) -> None:
        self.batch_size.labels(model).observe(sequences)
        self.batch_tokens.labels(model).observe(tokens)
        self.batch_seconds.labels(model).observe(seconds)
        self.tokens.labels(model).inc(tokens)

    def rejected(self, reason: str) -> None:
        self.rejections.labels(reason).inc()

    def model_loaded(self, model: str, seconds: float, source: str = "disk") -> None:
        self.load_seconds.labels(model, source).observe(seconds)
        self.loads.labels(model, source).inc()

    def model_load_failed(self, model: str) -> None:
        self.load_failures.labels(model).inc()

    def model_evicted(self, model: str, reason: str) -> None:
        self.evictions.labels(model, reason).inc()

    def pool_lookup(self, result: str) -> None:
        self.lookups.labels(result).inc()

    def load_waited(self, model: str, seconds: float) -> None:
        self.load_wait.labels(model).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _QueueCollector:
    def __init__(self, engine: EngineAPI):
        self.engine = engine

    def describe(self):
        return []

    def collect(self):
        depth = GaugeMetricFamily("shoal_queue_depth", "Inputs waiting for a forward pass.", labels=["model"])
        tokens = GaugeMetricFamily("shoal_queue_tokens", "Tokens waiting for a forward pass.", labels=["model"])
        for model, (items, queued_tokens) in self.engine.queue_depth().items():
            depth.add_metric([model], items)
            tokens.add_metric([model], queued_tokens)
        yield depth
        yield tokens
        resident = GaugeMetricFamily("shoal_models_resident", "Models resident on the device.")
        resident_bytes = GaugeMetricFamily("shoal_resident_bytes", "Bytes of model weights held, by tier.",
                                           labels=["tier"])
        pool = self.engine.pool_stats()
        resident.add_metric([], pool.resident)
        resident_bytes.add_metric(["device"], pool.device_bytes)
        resident_bytes.add_metric(["host"], pool.host_bytes)
        budget = GaugeMetricFamily("shoal_memory_budget_bytes", "Memory budget for models, by tier.", labels=["tier"])
        budget.add_metric(["device"], pool.budget)
        budget.add_metric(["host"], pool.host_budget)
        yield resident
        yield resident_bytes
        yield budget
