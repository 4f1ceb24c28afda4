"""compare(baseline, candidate) → proceed / warning / rollback, with the reasons.

The reference analyzer's rules: the error rate up by 50 % or more → rollback; the health score
down by 20 points or more, or p95 up by 100 ms or more → warning; else proceed. A baseline
without errors counts as "up 50 %" once the candidate's error rate reaches 1 %. Beyond them
(warnings): console error signatures that are new in the candidate, and latency jump windows.
"""

from __future__ import annotations

from typing import Any, Final

ERROR_RATE_UP: Final = 0.5
ERROR_RATE_FLOOR: Final = 0.01  # a rise from a zero baseline counts from this rate
HEALTH_DOWN: Final = 20.0
P95_UP_MS: Final = 100.0


def compare(baseline: dict[str, Any], candidate: dict[str, Any]) -> dict[str, Any]:
    """Both are `Analysis.report()` results."""
    reasons: list[dict[str, Any]] = []
    base_rate, cand_rate = float(baseline["error_rate"]), float(candidate["error_rate"])
    if not candidate["requests"]:
        reasons.append(
            {"level": "warning", "rule": "no_requests", "message": "the candidate has no HTTP requests"}
        )
    elif base_rate > 0 and cand_rate >= base_rate * (1 + ERROR_RATE_UP):
        reasons.append(
            {
                "level": "rollback",
                "rule": "error_rate",
                "message": f"error rate up {100 * (cand_rate / base_rate - 1):.0f}% "
                f"({100 * base_rate:.2f}% → {100 * cand_rate:.2f}%)",
            }
        )
    elif base_rate == 0 and cand_rate >= ERROR_RATE_FLOOR:
        reasons.append(
            {
                "level": "rollback",
                "rule": "error_rate",
                "message": f"error rate up from 0% to {100 * cand_rate:.2f}%",
            }
        )
    base_health, cand_health = float(baseline["health"]["score"]), float(candidate["health"]["score"])
    if base_health - cand_health >= HEALTH_DOWN:
        reasons.append(
            {
                "level": "warning",
                "rule": "health",
                "message": f"health score down {base_health - cand_health:.1f} points ({base_health} → {cand_health})",
            }
        )
    base_p95, cand_p95 = baseline["latency_ms"].get("p95"), candidate["latency_ms"].get("p95")
    if base_p95 is not None and cand_p95 is not None and cand_p95 - base_p95 >= P95_UP_MS:
        reasons.append(
            {
                "level": "warning",
                "rule": "p95",
                "message": f"p95 latency up {cand_p95 - base_p95:.0f} ms ({base_p95} → {cand_p95} ms)",
            }
        )
    known = {s["signature"] for s in baseline["console"]["top_error_signatures"]}
    new = [s for s in candidate["console"]["top_error_signatures"] if s["signature"] not in known]
    if new:
        reasons.append(
            {
                "level": "warning",
                "rule": "new_console_errors",
                "message": f"{len(new)} console error signature(s) not seen in the baseline, e.g. "
                f"{new[0]['signature'][:120]!r} ({new[0]['count']}x)",
            }
        )
    levels = {r["level"] for r in reasons}
    decision = "rollback" if "rollback" in levels else "warning" if levels else "proceed"
    return {
        "verdict": decision,
        "reasons": reasons,
        "baseline": _figures(baseline),
        "candidate": _figures(candidate),
    }


def _figures(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "requests": report["requests"],
        "error_rate": report["error_rate"],
        "health_score": report["health"]["score"],
        "p95_ms": report["latency_ms"].get("p95"),
        "console_errors": report["console"]["errors"],
        "time_range": report["time_range"],
    }
