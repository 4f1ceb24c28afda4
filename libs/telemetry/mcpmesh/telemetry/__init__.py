"""Logs, traces and metrics for every mcpmesh component: structlog, OpenTelemetry, Prometheus."""

from mcpmesh.telemetry.logs import bind_request, configure_logging, get_logger, update_request
from mcpmesh.telemetry.metrics import Metrics
from mcpmesh.telemetry.tenants import MetricsSettings, TenantLabels
from mcpmesh.telemetry.tracing import capture_spans, extract_context, inject_headers, setup_tracing, tracer

__all__ = [
    "Metrics",
    "MetricsSettings",
    "TenantLabels",
    "bind_request",
    "capture_spans",
    "configure_logging",
    "extract_context",
    "get_logger",
    "inject_headers",
    "setup_tracing",
    "tracer",
    "update_request",
]
