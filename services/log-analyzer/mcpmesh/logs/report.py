"""An Analysis rendered as a report (JSON-safe), with the health score and verdict."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from mcpmesh.logs.lines import minute_iso
from mcpmesh.logs.sketch import EXACT_MAX

if TYPE_CHECKING:
    from mcpmesh.logs.analysis import Analysis

HEALTHY_FROM: Final = 70.0
SLOWEST: Final = 10


def health_score(requests: int, errors: int, server_errors: int) -> float:
    """100 - 2 x error% - 0.5 x count(5xx), clamped to 0..100 (the reference analyzer's rule)."""
    error_pct = 100.0 * errors / requests if requests else 0.0
    return round(min(100.0, max(0.0, 100.0 - 2 * error_pct - 0.5 * server_errors)), 1)


def verdict(score: float, requests: int) -> str:
    if not requests:
        return "no_data"
    return "healthy" if score >= HEALTHY_FROM else "unhealthy"


def render(a: Analysis, *, top: int, series_points: int) -> dict[str, Any]:
    requests = a.requests
    errors = sum(n for s, n in a.statuses.items() if s >= 400)
    server_errors = sum(n for s, n in a.statuses.items() if s >= 500)
    score = health_score(requests, errors, server_errors)
    latency = a.latency
    hourly = a.series
    if a.series.width < 60:
        from mcpmesh.logs.series import Series

        hourly = Series(a.series.max_buckets)
        hourly.merge(a.series)
        hourly.widen(60)
    return {
        "lines": dict(a.counts),
        "malformed_samples": list(a.malformed_samples),
        "time_range": {
            "first": None if a.first_minute is None else minute_iso(a.first_minute),
            "last": None if a.last_minute is None else minute_iso(a.last_minute),
        },
        "requests": requests,
        "errors": errors,
        "server_errors": server_errors,
        "error_rate": round(errors / requests, 4) if requests else 0.0,
        "bytes_sent": a.bytes_sent,
        "status_counts": {str(s): n for s, n in sorted(a.statuses.items())},
        "errors_by_status": {str(s): n for s, n in sorted(a.statuses.items()) if s >= 400},
        "top_error_paths": [
            {
                "path": path,
                "errors": int(e.count),
                "max_overcount": int(e.error),
                "statuses": e.payload.counts,
            }
            for path, e in a.error_paths.top(top)
        ],
        "latency_ms": {
            **latency.summary(0.5, 0.95, 0.99),
            "max": None if not latency.count else latency.max,
            "exact": latency.exact,
            "relative_error": 0.0 if latency.exact else latency.accuracy,
        },
        "slowest_paths": [
            {
                "path": path,
                "requests": e.payload.requests,
                "mean_ms": round(e.payload.time_sum / e.payload.requests, 1),
                "max_ms": e.payload.time_max,
            }
            for path, e in sorted(
                ((p, e) for p, e in a.paths.entries.items() if e.payload.requests),
                key=lambda pe: pe[1].payload.time_sum / pe[1].payload.requests,
                reverse=True,
            )[:SLOWEST]
        ],
        "status_by_path": [
            {
                "path": path,
                "requests": int(e.count),
                "max_overcount": int(e.error),
                "errors": e.payload.errors,
                "statuses": e.payload.statuses.counts,
            }
            for path, e in a.paths.top(top)
        ],
        "top_clients": [{"ip": k, "requests": int(e.count)} for k, e in a.clients.top(top)],
        "top_user_agents": [{"user_agent": k, "requests": int(e.count)} for k, e in a.user_agents.top(top)],
        "ai_crawlers": {
            "requests": sum(c.requests for c in a.crawlers.values()),
            "by_crawler": [
                {
                    "crawler": name,
                    "requests": c.requests,
                    "success_rate": round(c.successes / c.requests, 4) if c.requests else 0.0,
                    "top_paths": [{"path": p, "requests": int(e.count)} for p, e in c.paths.top(5)],
                }
                for name, c in sorted(a.crawlers.items(), key=lambda nc: nc[1].requests, reverse=True)
            ],
        },
        "console": {
            "lines": a.counts["console"],
            "errors": a.console_errors,
            "top_error_signatures": [
                {
                    "signature": sig,
                    "count": int(e.count),
                    "max_overcount": int(e.error),
                    "level": e.payload.level,
                    "sample": e.payload.sample,
                    "first": minute_iso(e.payload.first) if e.payload.first else None,
                    "last": minute_iso(e.payload.last) if e.payload.last else None,
                }
                for sig, e in a.signatures.top(top)
            ],
        },
        "series": {"width_minutes": a.series.width, "points": a.series.points(series_points)},
        "hourly": hourly.points(series_points),
        "jumps": a.series.jumps(),
        "health": {"score": score, "verdict": verdict(score, requests), "healthy_from": HEALTHY_FROM},
        "accuracy": {
            "percentiles": f"exact (nearest rank) up to {EXACT_MAX} values, else DDSketch within "
            f"{latency.accuracy:.0%} relative error",
            "top_lists": "space-saving: a count is at most max_overcount above the truth",
        },
    }
