"""The gateway's metrics: the platform's shared set plus HTTP responses by status code and org."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from mcpmesh.telemetry.metrics import Metrics


class GatewayMetrics(Metrics):
    """`Metrics` (requests, latency, errors, auth failures, rate limited) and the gateway's own."""

    def __init__(self) -> None:
        super().__init__()
        self.responses = Counter(
            "mcpmesh_gateway_responses_total",
            "HTTP responses of the MCP endpoints, by status code and org ('-' when unauthenticated).",
            ("code", "org_id"),
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
        self.services_up = Gauge(
            "mcpmesh_gateway_services_discovered",
            "Services with at least one replica answering nats.micro discovery.",
            registry=self.registry,
        )
