"""Per-tenant metrics: a small set of families, org_id capped at the top N tenants plus `other`."""

from __future__ import annotations

import itertools

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from mcpmesh.telemetry import Metrics, MetricsSettings, TenantLabels


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def tenant_requests(metrics: Metrics) -> dict[str, float]:
    body, _ = metrics.render()
    return {
        sample.labels["org_id"]: sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name == "mcpmesh_tenant_requests_total"
    }


def capped(max_tenants: int, clock: Clock, window_s: float = 60.0) -> Metrics:
    settings = MetricsSettings(max_tenants=max_tenants, tenant_window_s=window_s)
    return Metrics(CollectorRegistry(), settings=settings, clock=clock)


def test_the_org_past_the_cap_is_counted_as_other() -> None:
    metrics = Metrics(CollectorRegistry(), settings=MetricsSettings(max_tenants=2))
    for org in ("org-a", "org-b", "org-c", "org-d", "org-a"):
        metrics.observe_call("context", "search", org, "ok", 0.01)
    assert tenant_requests(metrics) == {"org-a": 2, "org-b": 1, "other": 2}


def test_reranking_keeps_every_counter_monotonic_and_the_total_exact() -> None:
    clock = Clock()
    metrics = capped(1, clock)
    seen: list[dict[str, float]] = []
    total = 0
    # Window 1: org-a comes first and holds the label; org-b is busier (other).
    for org in ["org-a"] + ["org-b"] * 5:
        metrics.observe_call("context", "search", org, "ok", 0.01)
        total += 1
        seen.append(tenant_requests(metrics))
    assert seen[-1] == {"org-a": 1, "other": 5}
    # Window 2: org-b had the most traffic, so it takes the label; org-a is folded into other.
    clock.now = 61
    for org in ["org-b", "org-a", "org-b"]:
        metrics.observe_call("context", "search", org, "ok", 0.01)
        total += 1
        seen.append(tenant_requests(metrics))
    assert seen[-1] == {"org-b": 2, "other": 6}
    assert sum(seen[-1].values()) == total - 1  # org-a's first call left with its removed series
    # No series ever went down while it existed; `other` is never removed.
    for before, after in itertools.pairwise(seen):
        for org, value in before.items():
            if org in after:
                assert after[org] >= value, (org, before, after)
        assert "other" not in before or "other" in after


def test_an_idle_holder_keeps_its_label_while_there_is_room() -> None:
    clock = Clock()
    labels = TenantLabels(MetricsSettings(max_tenants=2, tenant_window_s=10), clock=clock)
    assert labels.label("org-a") == "org-a"
    clock.now = 11
    assert labels.label("org-b") == "org-b"
    clock.now = 22
    assert labels.label("org-a") == "org-a"
    assert labels.label("org-c") == "other"


def test_zero_tenants_puts_everyone_in_other() -> None:
    metrics = Metrics(CollectorRegistry(), settings=MetricsSettings(max_tenants=0))
    metrics.observe_call("context", "search", "org-a", "ok", 0.01)
    assert tenant_requests(metrics) == {"other": 1}


def test_no_family_multiplies_tenants_by_tools_or_statuses() -> None:
    metrics = Metrics(CollectorRegistry())
    for org in ("org-a", "org-b"):
        for tool in ("search", "create"):
            for status in ("ok", "invalid_request"):
                metrics.observe_call(
                    "context", tool, org, status, 0.01, {"prompt_tokens": 3, "cost_usd": 0.1}
                )
    metrics.observe_rate_limited("org-a", "key.requests_per_minute")
    tenant_families = set()
    for family in metrics.registry.collect():
        for sample in family.samples:
            if "org_id" in sample.labels:
                tenant_families.add(family.name)
                assert not {"tool", "status", "code"} & set(sample.labels), (family.name, sample.labels)
    assert tenant_families == {
        "mcpmesh_tenant_requests",
        "mcpmesh_tenant_errors",
        "mcpmesh_tenant_request_seconds",
        "mcpmesh_tenant_llm_tokens",
        "mcpmesh_tenant_llm_cost_usd",
        "mcpmesh_rate_limited",
    }


def test_llm_usage_is_counted_per_tenant() -> None:
    metrics = Metrics(CollectorRegistry())
    usage = {"prompt_tokens": 120, "completion_tokens": 30, "cost_usd": 0.25}
    metrics.observe_call("llm", "chat", "org-a", "ok", 1.0, usage)
    metrics.observe_call("llm", "chat", "org-a", "ok", 1.0, usage)
    registry = metrics.registry
    assert (
        registry.get_sample_value(
            "mcpmesh_tenant_llm_tokens_total", {"service": "llm", "org_id": "org-a", "kind": "prompt"}
        )
        == 240
    )
    assert (
        registry.get_sample_value(
            "mcpmesh_tenant_llm_tokens_total", {"service": "llm", "org_id": "org-a", "kind": "completion"}
        )
        == 60
    )
    assert registry.get_sample_value(
        "mcpmesh_tenant_llm_cost_usd_total", {"service": "llm", "org_id": "org-a"}
    ) == pytest.approx(0.5)


def test_settings_come_from_the_environment_and_bad_values_are_named() -> None:
    settings = MetricsSettings.from_env(
        {
            "MCPMESH_METRICS_MAX_TENANTS": "5",
            "MCPMESH_METRICS_TENANT_WINDOW_S": "30",
            "MCPMESH_METRICS_PORT": "9464",
        }
    )
    assert (settings.max_tenants, settings.tenant_window_s, settings.port) == (5, 30.0, 9464)
    assert MetricsSettings.from_env({}).port is None
    with pytest.raises(ValueError, match="MCPMESH_METRICS_MAX_TENANTS"):
        MetricsSettings.from_env({"MCPMESH_METRICS_MAX_TENANTS": "-1"})
    with pytest.raises(ValueError, match="MCPMESH_METRICS"):
        MetricsSettings.from_env({"MCPMESH_METRICS_PORT": "http"})
