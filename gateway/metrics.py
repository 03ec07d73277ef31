"""The gateway's Prometheus metrics, on `GET /metrics`.

Each app owns its registry (not prometheus-client's global one), so several apps in one process (the tests)
count separately. Routes are labelled by their template (`/v1/pose`), never by the raw path, so a scan of
random URLs cannot blow up the number of series: requests that never reached a route (unknown paths, and
those the guard or the size limits refused first) share the label `unmatched`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# The `*_created` timestamp series double the output and no dashboard reads them.
disable_created_metrics()

CONTENT_TYPE = CONTENT_TYPE_LATEST
UNMATCHED = "unmatched"
# From a fast text answer (~5 ms) to a timed-out one (the 30 s default upstream timeout).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "gateway_requests",
            "Requests answered, by route, method and status",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "gateway_request_duration_seconds",
            "Time from request start to the last response byte, by route",
            ("route",),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge("gateway_requests_in_flight", "Requests being handled now", registry=self.registry)
        self.upstream_errors = Counter(
            "gateway_upstream_errors",
            "TorchServe calls that failed, by model and error code",
            ("model", "code"),
            registry=self.registry,
        )
        self.upstream_retries = Counter(
            "gateway_upstream_retries",
            "Predictions re-sent to the next upstream after one refused them (404/503/'Worker died.')",
            ("model",),
            registry=self.registry,
        )
        self.upstream_healthy = Gauge(
            "gateway_upstream_healthy",
            "1 while a TorchServe upstream answers its pings and requests, 0 while it is marked down",
            ("upstream",),
            registry=self.registry,
        )
        self.explain_refused = Counter(
            "gateway_explain_refused",
            "Explanation requests refused with 429 because the model's explanation slots were all taken",
            ("model",),
            registry=self.registry,
        )
        self.cold_starts = Counter(
            "gateway_cold_starts",
            "Workers started for a task that had none (scaled to zero), by model",
            ("model",),
            registry=self.registry,
        )
        self.cold_start_seconds = Histogram(
            "gateway_cold_start_seconds",
            "Time from a cold task's first call to its worker being ready",
            buckets=(0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0),
            registry=self.registry,
        )
        self.scale_events = Counter(
            "gateway_scale_events",
            "Worker count changes the scaler made (to zero when idle or for room, one more or fewer under load)",
            ("model", "direction"),
            registry=self.registry,
        )
        self.budget_refusals = Counter(
            "gateway_budget_refusals",
            "Worker starts refused (503 capacity_full) because the worker-memory budget had no room",
            ("model",),
            registry=self.registry,
        )
        self.rejected = Counter(
            "gateway_auth_rejections",
            "Requests refused before any work: missing/invalid key, forbidden, rate limit",
            ("reason",),
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
