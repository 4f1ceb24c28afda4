"""Prometheus metrics for the gateway and services, on a registry of their own.

Not the prometheus_client global registry, so each test (or each embedded component)
can build a fresh `Metrics()` without "Duplicated timeseries" errors.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

__all__ = ["LATENCY_BUCKETS", "Metrics"]

# 0.5 ms .. 10 s: in-process tools answer in a millisecond, LLM calls take seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The platform's counters and latency histogram; create one per process and serve `render()`.

    With no registry given, a fresh one is created that also carries the process, platform
    and GC collectors (CPU, memory, fds) like the prometheus_client default registry does.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        if registry is None:
            registry = CollectorRegistry()
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            registry.register(GC_COLLECTOR)
        self.registry = registry
        self.requests = Counter(
            "mcpmesh_requests_total",
            "MCP requests handled, by outcome.",
            ("service", "tool", "org_id", "status"),
            registry=registry,
        )
        self.latency = Histogram(
            "mcpmesh_request_seconds",
            "MCP request handling time in seconds.",
            ("service", "tool"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            "mcpmesh_errors_total",
            "Requests that ended in an error, by error code.",
            ("service", "code"),
            registry=registry,
        )
        self.auth_failures = Counter(
            "mcpmesh_auth_failures_total",
            "Rejected credentials or tenant stamps, by reason.",
            ("reason",),
            registry=registry,
        )
        self.rate_limited = Counter(
            "mcpmesh_rate_limited_total",
            "Requests refused by a rate limit or quota.",
            ("org_id", "limit"),
            registry=registry,
        )

    def observe_call(self, service: str, tool: str | None, org_id: str, status: str, seconds: float) -> None:
        """Count one finished call and its latency; any status but "ok" is also an error (code = status).

        A call that is not a tool call (`tool` None) is labelled `tool=""`.
        """
        tool_label = tool or ""
        self.requests.labels(service, tool_label, org_id, status).inc()
        self.latency.labels(service, tool_label).observe(max(seconds, 0.0))
        if status != "ok":
            self.errors.labels(service, status).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type, for a `/metrics` response."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
