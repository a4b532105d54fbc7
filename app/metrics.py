"""Prometheus metrics, one registry per process (served at GET /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "atelier_http_requests_total", "HTTP requests by route, method and status", ["route", "method", "status"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "atelier_http_request_duration_seconds", "HTTP request latency by route", ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=REGISTRY,
)
INFERENCE_SECONDS = Histogram(
    "atelier_inference_duration_seconds", "onnxruntime run() latency per model", ["model"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=REGISTRY,
)
ACTIVE_PROVIDER = Gauge(
    "atelier_model_provider_info", "1 for the execution provider that runs each model", ["model", "provider"],
    registry=REGISTRY,
)
ADMITTED = Gauge("atelier_gate_admitted", "requests holding a place in the gate: uploading, waiting or running",
                 registry=REGISTRY)
MEMORY_BUDGET = Gauge("atelier_memory_budget_bytes", "memory the jobs of this worker may use at once",
                      registry=REGISTRY)
MEMORY_RESERVED = Gauge("atelier_memory_reserved_bytes", "estimated peak memory of the jobs running now",
                        registry=REGISTRY)
INFLIGHT = Gauge("atelier_inference_inflight", "inference calls running now", registry=REGISTRY)
REJECTED = Counter("atelier_overload_rejections_total", "requests answered 503 OVERLOADED", registry=REGISTRY)
RATE_LIMITED = Counter("atelier_rate_limited_total", "requests answered 429 RATE_LIMITED", registry=REGISTRY)
BATCH_SIZE = Histogram(
    "atelier_batch_size", "calls (requests' shares) served by one onnxruntime run, per batched model", ["model"],
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64), registry=REGISTRY,
)
BATCH_WAIT_SECONDS = Histogram(
    "atelier_batch_wait_seconds", "time a call's inputs waited in the batcher before their run started",
    ["model"], buckets=(0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1), registry=REGISTRY,
)
