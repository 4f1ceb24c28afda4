"""Prometheus metrics for the gateway and services, on a registry of their own.

Not the prometheus_client global registry, so each test (or each embedded component)
can build a fresh `Metrics()` without "Duplicated timeseries" errors.

Label sets stay bounded: tool-level families have no `org_id`, and the per-tenant families
(`mcpmesh_tenant_*`) have no tool or status, with `org_id` capped by `TenantLabels`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

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
from prometheus_client.metrics import MetricWrapperBase

from mcpmesh.telemetry.tenants import MetricsSettings, TenantLabels

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
        self,
        registry: CollectorRegistry | None = None,
        *,
        max_tool_labels: int = MAX_TOOL_LABELS,
        settings: MetricsSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
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
            "MCP requests handled, by tool and outcome (per tenant: mcpmesh_tenant_requests_total).",
            ("service", "tool", "status"),
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
            "Requests refused by a rate limit or quota (org_id capped like the tenant families).",
            ("org_id", "limit"),
            registry=registry,
        )
        self.tenant_requests = Counter(
            "mcpmesh_tenant_requests_total",
            "Requests handled per tenant (org_id: the top MCPMESH_METRICS_MAX_TENANTS, else 'other').",
            ("service", "org_id"),
            registry=registry,
        )
        self.tenant_errors = Counter(
            "mcpmesh_tenant_errors_total",
            "Requests per tenant that did not end 'ok' (tool errors included).",
            ("service", "org_id"),
            registry=registry,
        )
        self.tenant_latency = Histogram(
            "mcpmesh_tenant_request_seconds",
            "Request handling time per tenant, in seconds.",
            ("service", "org_id"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.tenant_llm_tokens = Counter(
            "mcpmesh_tenant_llm_tokens_total",
            "LLM tokens used per tenant, by kind (prompt, completion).",
            ("service", "org_id", "kind"),
            registry=registry,
        )
        self.tenant_llm_cost = Counter(
            "mcpmesh_tenant_llm_cost_usd_total",
            "LLM cost per tenant in US dollars, as reported by the tool.",
            ("service", "org_id"),
            registry=registry,
        )
        self._clock = clock
        self.tenants = TenantLabels(settings, clock=clock, on_dropped=self._drop_tenants)
        self._tenant_families: tuple[MetricWrapperBase, ...] = (
            self.tenant_requests,
            self.tenant_errors,
            self.tenant_latency,
            self.tenant_llm_tokens,
            self.tenant_llm_cost,
            self.rate_limited,
        )
        # Label lookups cost more than the increments: the children of each (service, org label) are kept.
        self._tenant_children: dict[tuple[str, str], tuple[Any, Any, Any]] = {}

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

    def configure(self, settings: MetricsSettings) -> None:
        """Apply the operator's settings (tenant cap and window); call before the first call is observed."""
        self.tenants = TenantLabels(settings, clock=self._clock, on_dropped=self._drop_tenants)

    def observe_call(
        self,
        service: str,
        tool: str | None,
        org_id: str,
        status: str,
        seconds: float,
        usage: Mapping[str, Any] | None = None,
    ) -> None:
        """Count one finished call and its latency; any status but "ok" is also an error (code = status).

        A call that is not a tool call (`tool` None) is labelled `tool=""`. `usage` (prompt_tokens,
        completion_tokens, cost_usd) adds to the tenant's LLM token and cost counters.
        """
        seconds = max(seconds, 0.0)
        service, tool_label = self.tool_labels(service, tool or "")
        self.requests.labels(service, tool_label, status).inc()
        self.latency.labels(service, tool_label).observe(seconds)
        if status != "ok":
            self.errors.labels(service, status).inc()
        self.observe_tenant(service, org_id, status, seconds, usage)

    def observe_tenant(
        self,
        service: str,
        org_id: str,
        status: str,
        seconds: float,
        usage: Mapping[str, Any] | None = None,
    ) -> None:
        """The per-tenant part of `observe_call` (`service` must already be a bounded label)."""
        org = self.tenants.label(org_id)
        key = (service, org)
        children = self._tenant_children.get(key)
        if children is None:
            children = (
                self.tenant_requests.labels(service, org),
                self.tenant_errors.labels(service, org),
                self.tenant_latency.labels(service, org),
            )
            self._tenant_children[key] = children
        requests, errors, latency = children
        requests.inc()
        if status != "ok":
            errors.inc()
        latency.observe(seconds)
        if usage:
            for kind in ("prompt", "completion"):
                tokens = _amount(usage.get(f"{kind}_tokens"))
                if tokens:
                    self.tenant_llm_tokens.labels(service, org, kind).inc(tokens)
            cost = _amount(usage.get("cost_usd"))
            if cost:
                self.tenant_llm_cost.labels(service, org).inc(cost)

    def observe_rate_limited(self, org_id: str, limit: str) -> None:
        """Count one request refused by `limit` (a rate limit or quota name from the gateway)."""
        org = self.tenants.label(org_id, count=False)
        self.rate_limited.labels(org, limit).inc()

    def _drop_tenants(self, orgs: frozenset[str]) -> None:
        """Remove the series of orgs that lost their label (see `mcpmesh.telemetry.tenants`)."""
        for org in orgs:
            for family in self._tenant_families:
                family.remove_by_labels({"org_id": org})
        self._tenant_children = {k: v for k, v in self._tenant_children.items() if k[1] not in orgs}

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


def _amount(value: Any) -> float:
    """A usage figure to count: a positive number, else 0 (missing or malformed figures count nothing)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return 0.0
