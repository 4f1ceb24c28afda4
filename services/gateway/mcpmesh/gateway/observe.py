"""The gateway's metrics: the platform's shared set plus HTTP responses by status code."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import Counter, Gauge
from prometheus_client.core import CounterMetricFamily

from mcpmesh.telemetry.metrics import Metrics
from mcpmesh.telemetry.tenants import MetricsSettings


class GatewayMetrics(Metrics):
    """`Metrics` (requests, latency, errors, auth failures, rate limited) and the gateway's own."""

    def __init__(self, settings: MetricsSettings | None = None) -> None:
        super().__init__(settings=settings)
        self.responses = Counter(
            "mcpmesh_gateway_responses_total",
            "HTTP responses of the MCP endpoints, by status code (per tenant: mcpmesh_tenant_*).",
            ("code",),
            registry=self.registry,
        )
        self.sessions_opened = Counter(
            "mcpmesh_gateway_sessions_opened_total",
            "Legacy (2025-11-25) sessions opened with initialize.",
            registry=self.registry,
        )
        self.streams = Gauge(
            "mcpmesh_gateway_open_streams",
            "Legacy GET event streams currently open on this replica.",
            registry=self.registry,
        )
        # Label lookups cost more than the increments: the children of each label set are kept.
        self._children: dict[tuple[str, str, str, int], tuple[str, Any, Any, Any, Any]] = {}
        self.services_up = Gauge(
            "mcpmesh_gateway_services_discovered",
            "Services with at least one replica answering nats.micro discovery.",
            registry=self.registry,
        )

    def watch_audit_queue(self, queued: Callable[[], int], dropped: Callable[[], int]) -> None:
        """Export the key-use audit queue (control/key_use.py): its length and what it dropped."""
        Gauge(
            "mcpmesh_gateway_audit_queued",
            "Key-use audit events waiting to be published to NATS.",
            registry=self.registry,
        ).set_function(queued)
        self.registry.register(
            _CounterOf(
                "mcpmesh_gateway_audit_dropped",
                "Key-use audit events dropped because the queue was full (NATS not taking them).",
                dropped,
            )
        )

    def observe(
        self, service: str, tool: str, org_id: str, status: str, http_status: int, seconds: float
    ) -> None:
        """`observe_call` plus the HTTP response count, with the label children cached."""
        key = (service, tool, status, http_status)
        children = self._children.get(key)
        if children is None:
            if len(self._children) > 50_000:
                self._children.clear()
            service_label, tool = self.tool_labels(service, tool)
            children = (
                service_label,
                self.requests.labels(service_label, tool, status),
                self.latency.labels(service_label, tool),
                self.errors.labels(service_label, status) if status != "ok" else None,
                self.responses.labels(str(http_status)),
            )
            self._children[key] = children
        service_label, requests, latency, errors, responses = children
        seconds = max(seconds, 0.0)
        requests.inc()
        latency.observe(seconds)
        if errors is not None:
            errors.inc()
        responses.inc()
        self.observe_tenant(service_label, org_id, status, seconds)


class _CounterOf:
    """A counter whose value a function returns (a collector for the registry)."""

    def __init__(self, name: str, documentation: str, value: Callable[[], int]) -> None:
        self.name, self.documentation, self.value = name, documentation, value

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.value())
