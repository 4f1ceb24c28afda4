"""The tools over a real nats-server, with sources in Azurite in the real blob layout."""

from __future__ import annotations

import json
import math

import pytest

from mcpmesh.logs.demo import BURST_PATH, SLOW_PATH, DemoSpec, Truth, generate, hourly_blobs
from mcpmesh.logs.sketch import ACCURACY
from mcpmesh.logs.testing import ORG_A, Logs

SPEC = DemoSpec(hours=3, per_minute=40)


def within(estimate: float, values: list[float], q: float) -> bool:
    ordered = sorted(values)
    low = ordered[math.floor(q * (len(ordered) - 1))]
    high = ordered[max(0, math.ceil(q * len(ordered)) - 1)]
    return min(low, high) * (1 - ACCURACY) - 0.05 <= estimate <= max(low, high) * (1 + ACCURACY) + 0.05


async def test_analyze_inline_lines(logs: Logs) -> None:
    truth = Truth()
    lines = [line.decode() for _, line in generate(DemoSpec(hours=1, per_minute=10), truth)]
    report = await logs.call(ORG_A, "analyze", {"lines": [*lines, "garbage", '{"time": 1}']})
    assert report["requests"] == truth.requests
    assert report["errors"] == truth.errors
    assert report["lines"]["malformed"] == 2
    assert report["console"]["errors"] == truth.console_errors
    assert within(report["latency_ms"]["p95"], truth.latencies, 0.95)
    # several lines in one element, and a time range
    joined = "\n".join(lines)
    ranged = await logs.call(
        ORG_A,
        "analyze",
        {"lines": [joined], "since": "2026-11-30T09:30:00Z", "until": "2026-11-30T09:40:00+00:00"},
    )
    assert ranged["requests"] == 10 * 10
    assert ranged["lines"]["out_of_range"] > 0


async def test_source_analysis_job_matches_the_ground_truth(logs: Logs) -> None:
    truth = Truth()
    blobs = list(hourly_blobs(SPEC, truth))
    container = logs.container(blobs)
    source = await logs.add_source(ORG_A, container, prefix="resourceId=/SUBSCRIPTIONS/")
    assert source["source_id"].startswith("src-") and source["location"].endswith(
        f"/devstoreaccount1/{container}"
    )
    view, result = await logs.analyze_source(ORG_A, source["source_id"], name="whole")
    assert view["status"] == "succeeded", view
    assert view["progress"] == view["total"] == 3
    assert view["partial"]["bytes"] == sum(len(data) for _, data in blobs)
    assert view["partial"]["lines"] == sum(data.count(b"\n") for _, data in blobs)
    report = result["report"]
    assert report["requests"] == truth.requests
    assert report["status_counts"] == {str(s): n for s, n in sorted(truth.statuses.items())}
    for q, name in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        assert within(report["latency_ms"][name], truth.latencies, q), name
    assert report["slowest_paths"][0]["path"] == SLOW_PATH
    assert report["top_error_paths"][0]["path"] == BURST_PATH
    crawlers = {c["crawler"]: c["requests"] for c in report["ai_crawlers"]["by_crawler"]}
    assert crawlers == dict(truth.crawler_requests)
    assert [(j["start"], j["end"]) for j in report["jumps"]] == [("2026-11-30T10:10Z", "2026-11-30T10:20Z")]
    assert report["blobs"] == {
        "read": 3,
        "bytes": view["partial"]["bytes"],
        "not_log_blobs": [],
        "outside_hourly_layout": 0,
    }

    saved = await logs.call(ORG_A, "analyses", {})
    assert [a["analysis_id"] for a in saved["analyses"]] == [result["analysis_id"]]
    got = await logs.call(ORG_A, "analysis_get", {"analysis_id": result["analysis_id"]})
    assert got["report"]["requests"] == truth.requests and got["name"] == "whole"

    # one hour of the three: only the blob of 10:00 is read
    view, hour = await logs.analyze_source(
        ORG_A, source["source_id"], since="2026-11-30T10:00:00Z", until="2026-11-30T11:00:00Z"
    )
    assert hour["report"]["blobs"]["read"] == 1
    assert hour["report"]["requests"] == 60 * SPEC.per_minute


async def test_compare_gives_the_expected_verdicts(logs: Logs) -> None:
    ids = {}
    for label, spec in (
        ("base", DemoSpec(hours=1, per_minute=40, burst=None, seed=1)),
        ("same", DemoSpec(hours=1, per_minute=40, burst=None, seed=2)),
        ("slow", DemoSpec(hours=1, per_minute=40, burst=None, seed=2, extra_ms=200)),
        ("broken", DemoSpec(hours=1, per_minute=40, burst=(5, 40), seed=2)),
    ):
        source = await logs.add_source(ORG_A, logs.container(hourly_blobs(spec)))
        _, result = await logs.analyze_source(ORG_A, source["source_id"], name=label)
        ids[label] = result["analysis_id"]
    verdicts = {
        label: await logs.call(ORG_A, "compare", {"baseline_id": ids["base"], "candidate_id": ids[label]})
        for label in ("same", "slow", "broken")
    }
    assert verdicts["same"]["verdict"] == "proceed"
    assert verdicts["slow"]["verdict"] == "warning"
    assert [r["rule"] for r in verdicts["slow"]["reasons"]] == ["p95"]
    assert verdicts["broken"]["verdict"] == "rollback"
    assert verdicts["broken"]["reasons"][0]["rule"] == "error_rate"


async def test_sources_can_be_listed_replaced_and_removed(logs: Logs) -> None:
    container = logs.container([])
    first = await logs.add_source(ORG_A, container)
    again = await logs.add_source(ORG_A, container, prefix="x/")
    assert again["source_id"] == first["source_id"] and again["prefix"] == "x/"
    assert again["sas_fingerprint"] != first["sas_fingerprint"] or again["updated_at"] >= first["updated_at"]
    listed = await logs.call(ORG_A, "sources", {})
    assert [s["source_id"] for s in listed["sources"]] == [first["source_id"]]
    assert listed["sources"][0]["sas_expires_at"] is not None
    removed = await logs.call(ORG_A, "source_remove", {"source_id": first["source_id"]})
    assert removed == {"source_id": first["source_id"], "removed": True}
    assert (await logs.call(ORG_A, "sources", {}))["sources"] == []
    secret = json.dumps(logs.seen)
    assert "sig=" not in secret and "se=" not in secret


@pytest.mark.parametrize("per_minute", [1])
async def test_the_job_reports_progress_per_blob(logs: Logs, per_minute: int) -> None:
    spec = DemoSpec(hours=5, per_minute=per_minute, burst=None)
    source = await logs.add_source(ORG_A, logs.container(hourly_blobs(spec)))
    view, result = await logs.analyze_source(ORG_A, source["source_id"])
    assert view["message"].startswith("5/5 blobs, ")
    assert result["report"]["requests"] == 5 * 60 * per_minute
