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
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

__all__ = ["LATENCY_BUCKETS", "MAX_TOOL_LABELS", "Metrics"]

#: Distinct (service, tool) label pairs one `Metrics` records. Tool and method names come from
#: callers, so past this many a new pair is counted as ("other", "other"): label sets (each a
#: child kept for the life of the process) cannot grow without bound.
MAX_TOOL_LABELS = 1000

# 0.5 ms .. 10 s: in-process tools answer in a millisecond, LLM calls take seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The platform's counters and latency histogram; create one per process and serve `render()`.

    With no registry given, a fresh one is created that also carries the process, platform
    and GC collectors (CPU, memory, fds) like the prometheus_client default registry does.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, max_tool_labels: int = MAX_TOOL_LABELS
    ) -> None:
        if registry is None:
            registry = CollectorRegistry()
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            registry.register(GC_COLLECTOR)
        self.registry = registry
        self.max_tool_labels = max_tool_labels
        self._tool_labels: set[tuple[str, str]] = set()
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

        self.admission_refused = Counter(
            "mcpmesh_admission_refused_total",
            "Calls refused at once because this process was at capacity (503 / unavailable, "
            "Retry-After), by reason: capacity, org_share, queue_wait.",
            ("reason",),
            registry=registry,
        )
        self.admission_inflight = Gauge(
            "mcpmesh_admission_inflight",
            "Calls this process is working on (admitted, not finished).",
            registry=registry,
        )
        self.admission_queued = Gauge(
            "mcpmesh_admission_queued",
            "Calls waiting for an admission slot.",
            registry=registry,
        )

    def observe_call(self, service: str, tool: str | None, org_id: str, status: str, seconds: float) -> None:
        """Count one finished call and its latency; any status but "ok" is also an error (code = status).

        A call that is not a tool call (`tool` None) is labelled `tool=""`.
        """
        service, tool_label = self.tool_labels(service, tool or "")
        self.requests.labels(service, tool_label, org_id, status).inc()
        self.latency.labels(service, tool_label).observe(max(seconds, 0.0))
        if status != "ok":
            self.errors.labels(service, status).inc()

    def tool_labels(self, service: str, tool: str) -> tuple[str, str]:
        """(service, tool) as labels: themselves, or ("other", "other") once MAX_TOOL_LABELS are in use."""
        pair = (service, tool)
        if pair in self._tool_labels:
            return pair
        if len(self._tool_labels) >= self.max_tool_labels:
            return "other", "other"
        self._tool_labels.add(pair)
        return pair

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type, for a `/metrics` response."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
