"""Metrics: what /metrics shows after calls are observed."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from mcpmesh.telemetry import Metrics


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    body, _ = metrics.render()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def test_observe_call_counts_requests_latency_and_errors() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.observe_call("mcp-llm", "chat", "org-acme", "ok", 0.003)
    metrics.observe_call("mcp-llm", "chat", "org-acme", "ok", 0.2)
    metrics.observe_call("mcp-llm", "chat", "org-acme", "upstream_timeout", 4.0)

    request = {"service": "mcp-llm", "tool": "chat"}
    assert value(metrics, "mcpmesh_requests_total", **request, status="ok") == 2
    assert value(metrics, "mcpmesh_requests_total", **request, status="upstream_timeout") == 1
    assert value(metrics, "mcpmesh_errors_total", service="mcp-llm", code="upstream_timeout") == 1
    assert value(metrics, "mcpmesh_errors_total", service="mcp-llm", code="ok") is None

    tenant = {"service": "mcp-llm", "org_id": "org-acme"}
    assert value(metrics, "mcpmesh_tenant_requests_total", **tenant) == 3
    assert value(metrics, "mcpmesh_tenant_errors_total", **tenant) == 1
    assert value(metrics, "mcpmesh_tenant_request_seconds_count", **tenant) == 3
    assert value(metrics, "mcpmesh_tenant_request_seconds_bucket", **tenant, le="0.25") == 2

    latency = {"service": "mcp-llm", "tool": "chat"}
    assert value(metrics, "mcpmesh_request_seconds_count", **latency) == 3
    assert value(metrics, "mcpmesh_request_seconds_sum", **latency) == pytest.approx(4.203)
    assert value(metrics, "mcpmesh_request_seconds_bucket", **latency, le="0.005") == 1
    assert value(metrics, "mcpmesh_request_seconds_bucket", **latency, le="0.25") == 2
    assert value(metrics, "mcpmesh_request_seconds_bucket", **latency, le="+Inf") == 3


def test_buckets_span_half_a_millisecond_to_ten_seconds() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.observe_call("gateway", "x", "org-acme", "ok", 0.0001)
    bounds = {
        dict(labels)["le"] for name, labels in samples(metrics) if name == "mcpmesh_request_seconds_bucket"
    }
    assert {"0.0005", "10.0", "+Inf"} <= bounds


def test_call_without_a_tool_is_labelled_empty() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.observe_call("gateway", None, "org-acme", "ok", 0.01)
    assert value(metrics, "mcpmesh_requests_total", service="gateway", tool="", status="ok") == 1


def test_auth_and_rate_limit_counters() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.auth_failures.labels("expired").inc()
    metrics.observe_rate_limited("org-acme", "requests_per_minute")
    metrics.observe_rate_limited("org-acme", "requests_per_minute")
    assert value(metrics, "mcpmesh_auth_failures_total", reason="expired") == 1
    assert value(metrics, "mcpmesh_rate_limited_total", org_id="org-acme", limit="requests_per_minute") == 2


def test_render_returns_the_prometheus_content_type() -> None:
    body, content_type = Metrics(CollectorRegistry()).render()
    assert content_type.startswith("text/plain; version=")
    assert b"# TYPE mcpmesh_requests_total counter" in body


def test_fresh_instances_do_not_share_state() -> None:
    first, second = Metrics(), Metrics()  # would raise "Duplicated timeseries" on a shared registry
    first.observe_call("gateway", "t", "org-acme", "ok", 0.1)
    assert value(first, "mcpmesh_requests_total", service="gateway", tool="t", status="ok") == 1
    assert value(second, "mcpmesh_requests_total", service="gateway", tool="t", status="ok") is None
    assert any(name == "process_cpu_seconds_total" for name, _ in samples(first))


def test_caller_chosen_tool_names_cannot_grow_the_label_sets_without_bound() -> None:
    metrics = Metrics(CollectorRegistry(), max_tool_labels=3)
    for i in range(50):
        metrics.observe_call("context", f"random-{i}", "org-acme", "invalid_request", 0.001)
    metrics.observe_call("context", "random-0", "org-acme", "ok", 0.001)  # seen before: keeps its name
    series = {dict(labels)["tool"] for name, labels in samples(metrics) if name == "mcpmesh_requests_total"}
    assert series == {"random-0", "random-1", "random-2", "other"}
    other = {"service": "other", "tool": "other", "status": "invalid_request"}
    assert value(metrics, "mcpmesh_requests_total", **other) == 47
    assert value(metrics, "mcpmesh_request_seconds_count", service="other", tool="other") == 47
