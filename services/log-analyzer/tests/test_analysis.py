"""The analysis core against generated logs with known ground truth (no bus, no store)."""

from __future__ import annotations

import json
import math
import random

import pytest

from mcpmesh.logs.analysis import Analysis, Limits, LineSplitter
from mcpmesh.logs.classify import signature
from mcpmesh.logs.compare import compare
from mcpmesh.logs.demo import BURST_PATH, SLOW_PATH, DemoSpec, Truth, generate, http_line
from mcpmesh.logs.sketch import ACCURACY, EXACT_MAX, Quantiles
from mcpmesh.logs.topk import counter

SPEC = DemoSpec(hours=2, per_minute=60)


def analysed(spec: DemoSpec = SPEC) -> tuple[Analysis, Truth]:
    truth = Truth()
    analysis = Analysis().feed_all(line for _, line in generate(spec, truth))
    return analysis, truth


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def assert_within(estimate: float, values: list[float], q: float, accuracy: float = ACCURACY) -> None:
    """Within the sketch's relative error of the true quantile (rank q·(n-1) .. nearest rank)."""
    ordered = sorted(values)
    low = ordered[math.floor(q * (len(ordered) - 1))]
    high = ordered[max(0, math.ceil(q * len(ordered)) - 1)]
    assert min(low, high) * (1 - accuracy) - 1e-9 <= estimate <= max(low, high) * (1 + accuracy) + 1e-9


def test_counts_statuses_and_errors_match_the_ground_truth() -> None:
    analysis, truth = analysed()
    report = analysis.report()
    assert report["requests"] == truth.requests == 2 * 60 * 60
    assert report["status_counts"] == {str(s): n for s, n in sorted(truth.statuses.items())}
    assert report["errors"] == truth.errors
    assert report["errors_by_status"]["500"] == truth.statuses[500]
    assert report["lines"]["malformed"] == 0
    assert report["lines"]["console"] == truth.console_lines
    assert report["console"]["errors"] == truth.console_errors
    assert report["top_error_paths"][0]["path"] == BURST_PATH
    assert report["top_error_paths"][0]["statuses"] == {"500": truth.path_requests[BURST_PATH]}


def test_percentiles_are_within_the_stated_relative_error() -> None:
    analysis, truth = analysed()
    latency = analysis.report()["latency_ms"]
    assert latency["exact"] is False and latency["relative_error"] == ACCURACY
    for q, name in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        assert_within(analysis.latency.quantile(q) or 0.0, truth.latencies, q)
        assert latency[name] == pytest.approx(analysis.latency.quantile(q), abs=0.05)
    assert latency["mean"] == pytest.approx(sum(truth.latencies) / len(truth.latencies), abs=0.05)
    assert latency["max"] == max(truth.latencies)


def test_small_inputs_get_exact_nearest_rank_percentiles() -> None:
    values = [float(v) for v in random.Random(3).sample(range(1, 5000), EXACT_MAX)]
    q = Quantiles()
    for v in values:
        q.add(v)
    assert q.exact
    for p in (0.5, 0.95, 0.99):
        assert q.quantile(p) == nearest_rank(values, p)


def test_slow_paths_and_crawler_traffic() -> None:
    analysis, truth = analysed()
    report = analysis.report()
    slowest = report["slowest_paths"][0]
    assert slowest["path"] == SLOW_PATH
    assert slowest["mean_ms"] == pytest.approx(
        truth.path_time[SLOW_PATH] / truth.path_requests[SLOW_PATH], abs=0.05
    )
    crawlers = {c["crawler"]: c for c in report["ai_crawlers"]["by_crawler"]}
    assert set(crawlers) == {"GPTBot", "ClaudeBot"}
    for name, c in crawlers.items():
        assert c["requests"] == truth.crawler_requests[name]
        assert c["success_rate"] == round(truth.crawler_successes[name] / truth.crawler_requests[name], 4)
    assert report["ai_crawlers"]["requests"] == sum(truth.crawler_requests.values())


def test_the_injected_error_burst_is_found() -> None:
    analysis, _ = analysed()
    jumps = analysis.report()["jumps"]
    assert len(jumps) == 1
    jump = jumps[0]
    assert jump["kind"].startswith("errors")
    # the burst is minutes 70..80 after 09:00
    assert (jump["start"], jump["end"]) == ("2026-11-30T10:10Z", "2026-11-30T10:20Z")
    assert jump["error_rate"] > 0.4 > jump["median_error_rate"]
    quiet, _ = analysed(DemoSpec(hours=2, per_minute=60, burst=None))
    assert quiet.report()["jumps"] == []


def test_health_score_and_verdict() -> None:
    quiet, truth = analysed(DemoSpec(hours=1, per_minute=20, burst=None, seed=1))
    health = quiet.report()["health"]
    error_pct = 100 * truth.errors / truth.requests
    expected = max(0.0, min(100.0, 100 - 2 * error_pct - 0.5 * truth.statuses[500]))
    assert health["score"] == round(expected, 1)
    assert health["verdict"] == ("healthy" if expected >= 70 else "unhealthy")
    bursty, _ = analysed()
    assert bursty.report()["health"]["verdict"] == "unhealthy"
    assert Analysis().report()["health"]["verdict"] == "no_data"


def test_partial_results_merge_to_the_single_pass_result() -> None:
    lines = [line for _, line in generate(SPEC)]
    whole = Analysis().feed_all(lines).report()
    parts = [Analysis().feed_all(lines[i::3]) for i in range(3)]  # interleaved: every part spans all hours
    merged = Analysis.from_state(json.loads(json.dumps(parts[0].state())))
    for part in parts[1:]:
        merged.merge(Analysis.from_state(json.loads(json.dumps(part.state()))))
    report = merged.report()
    for key in (
        "lines",
        "requests",
        "errors",
        "status_counts",
        "ai_crawlers",
        "health",
        "jumps",
        "time_range",
    ):
        assert report[key] == whole[key], key
    assert [p["path"] for p in report["top_error_paths"]] == [p["path"] for p in whole["top_error_paths"]]
    assert report["slowest_paths"][0] == whole["slowest_paths"][0]
    assert (
        report["console"]["top_error_signatures"][0]["count"]
        == whole["console"]["top_error_signatures"][0]["count"]
    )
    for name in ("p50", "p95", "p99"):
        assert report["latency_ms"][name] == pytest.approx(whole["latency_ms"][name], rel=2 * ACCURACY)


def test_malformed_lines_are_counted_and_sampled_never_fatal() -> None:
    good = http_line(SPEC.start, "/", 200, 12, "x", "1.2.3.4", False)
    bad = [
        b"not json at all",
        b"[1, 2, 3]",
        b'{"category": "AppServiceHTTPLogs", "properties": {"ScStatus": 200}}',  # no time
        b'{"time": "yesterday", "category": "AppServiceConsoleLogs"}',
        b'{"time": "2026-11-30T10:00:00Z", "category": "AppServiceHTTPLogs", "properties": {"ScStatus": "abc"}}',
        b'{"time": "2026-11-30T10:00:00Z", "category": "AppServiceHTTPLogs", "properties": "{broken"}',
        b'{"time": "2026-11-30T10:00:00Z", "category": "AppServiceHTTPLogs", "properties": {"CsUriStem": "/"}}',
        b"\xff\xfe\x00 binary",
        b'{"time": 5}',
    ]
    analysis = Analysis().feed_all([good, *bad, b"", b"   ", good])
    report = analysis.report()
    assert report["lines"]["malformed"] == len(bad)
    assert report["requests"] == 2
    samples = report["malformed_samples"]
    assert len(samples) == Limits().malformed_samples
    assert samples[0] == {"line": 2, "reason": "not a JSON object", "excerpt": "not json at all"}
    reasons = {s["reason"] for s in samples}
    assert "no 'time'" in reasons and "'time' is not an ISO 8601 time" in reasons
    assert "HTTP properties: ScStatus has the wrong type" in reasons


def test_line_splitter_gives_the_same_result_in_any_chunking_and_drops_overlong_lines() -> None:
    lines = [line for _, line in generate(DemoSpec(hours=1, per_minute=10))]
    data = b"\n".join(lines)
    whole = Analysis().feed_all(lines).report()
    rng = random.Random(5)
    analysis = Analysis()
    splitter = LineSplitter(analysis)
    at = 0
    while at < len(data):
        size = rng.randrange(1, 3000)
        splitter.feed(data[at : at + size])
        at += size
    splitter.close()
    assert analysis.report()["lines"] == whole["lines"]
    assert analysis.report()["latency_ms"] == whole["latency_ms"]

    small = Analysis(Limits(max_line_bytes=1000))
    splitter = LineSplitter(small)
    for chunk in (lines[0] + b"\n" + b"x" * 700, b"y" * 700, b"z" * 700 + b"\n" + lines[1] + b"\n"):
        splitter.feed(chunk)
    splitter.close()
    assert small.counts["malformed"] == 1 and small.requests == 2
    assert small.malformed_samples[0]["reason"] == "line longer than 1000 bytes"


def test_top_k_stays_bounded_and_keeps_the_heavy_hitters() -> None:
    top = counter(50)
    rng = random.Random(2)
    for i in range(100_000):
        top.add("hot" if i % 10 == 0 else "warm" if i % 25 == 0 else f"cold-{rng.randrange(10**9)}")
        assert len(top.entries) <= 100
    ranked = list(top.top(2))
    assert [k for k, _ in ranked] == ["hot", "warm"]
    hot = ranked[0][1]
    assert hot.count - hot.error <= 10_000 <= hot.count


def test_memory_is_bounded_by_the_limits_not_the_input() -> None:
    analysis = Analysis(Limits(paths=20, error_paths=10, clients=10, user_agents=10, series_buckets=30))
    start = SPEC.start
    for i in range(20_000):
        analysis.feed(http_line(start, f"/p/{i}", 404, i % 700, f"agent-{i}", f"10.0.{i % 250}.{i}", False))
    assert len(analysis.paths.entries) <= 40
    assert len(analysis.error_paths.entries) <= 20
    assert len(analysis.clients.entries) <= 20 and len(analysis.user_agents.entries) <= 20
    assert len(analysis.series.buckets) <= 30
    assert not analysis.latency.exact


def test_series_widen_past_the_bucket_cap() -> None:
    analysis = Analysis(Limits(series_buckets=50))
    analysis.feed_all(line for _, line in generate(DemoSpec(hours=3, per_minute=5, burst=None)))
    report = analysis.report()
    assert report["series"]["width_minutes"] == 5
    assert len(report["series"]["points"]) == 36
    assert sum(p["requests"] for p in report["series"]["points"]) == report["requests"]
    assert [p["requests"] for p in report["hourly"]] == [300, 300, 300]


def test_console_signatures_normalize_numbers_guids_and_hex_ids() -> None:
    a = signature(
        "Timeout for order 12345 id 4f3a9c2e-1111-2222-3333-444455556666 at 0x7ffe12ab after 30.5 s"
    )
    b = signature(
        "Timeout for order 99 id 00000000-aaaa-bbbb-cccc-444455556666 at 0xdeadbeef after 1 s\nstack"
    )
    assert a == b == "Timeout for order <n> id <guid> at <hex> after <n> s"
    analysis, truth = analysed()
    sigs = analysis.report()["console"]["top_error_signatures"]
    assert len(sigs) == 1 and sigs[0]["count"] == truth.console_errors
    assert sigs[0]["signature"].startswith(
        "Unhandled exception in OrderService for order <n> (correlation <hex>)"
    )


def test_compare_verdicts() -> None:
    base = analysed(DemoSpec(hours=1, per_minute=60, burst=None, seed=11))[0].report()
    same = analysed(DemoSpec(hours=1, per_minute=60, burst=None, seed=12))[0].report()
    assert compare(base, same)["verdict"] == "proceed"
    slower = analysed(DemoSpec(hours=1, per_minute=60, burst=None, seed=12, extra_ms=150))[0].report()
    result = compare(base, slower)
    assert result["verdict"] == "warning"
    assert [r["rule"] for r in result["reasons"]] == ["p95"]
    broken = analysed(DemoSpec(hours=1, per_minute=60, burst=(10, 40), seed=12))[0].report()
    result = compare(base, broken)
    assert result["verdict"] == "rollback"
    assert "error_rate" in [r["rule"] for r in result["reasons"]]
    assert result["candidate"]["error_rate"] > result["baseline"]["error_rate"]


def test_a_latency_shift_is_found_and_noise_is_not() -> None:
    analysis, _ = analysed(DemoSpec(hours=2, per_minute=30, burst=None, slow=(30, 36)))
    jumps = analysis.report()["jumps"]
    assert [(j["kind"], j["start"], j["end"]) for j in jumps] == [
        ("latency", "2026-11-30T09:30Z", "2026-11-30T09:36Z")
    ]
    for seed in range(5):  # small buckets (30 requests) of the same distribution: no jump
        quiet, _ = analysed(DemoSpec(hours=6, per_minute=30, burst=None, seed=seed))
        assert quiet.report()["jumps"] == [], seed
