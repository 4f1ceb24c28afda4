"""Log tools: find an environment's logs by time range, and hand a range to log-analyzer over
the bus with the caller's stamp (analyze_logs), never showing the SAS link. compare_logs is a
job (its calls need the gateway's job ticket): tests/gateway/test_dxp_service.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from mcpmesh.dxp.testing import ORG_A, Dxp


async def _result(dxp: Dxp, job: dict[str, Any]) -> dict[str, Any]:
    assert dxp.logs is not None
    view = await dxp.finish(dxp.logs, ORG_A, job["job_id"])
    assert view["status"] == "succeeded", view
    result: dict[str, Any] = await dxp.logs.call_tool(ORG_A, "job_result", {"job_id": job["job_id"]})
    return result


async def test_find_and_analyze_logs_through_log_analyzer(dxp: Dxp) -> None:
    await dxp.register(ORG_A)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    since, until = (hour - timedelta(hours=2)).isoformat(), (hour + timedelta(hours=1)).isoformat()
    found = await dxp.call(
        ORG_A, "logs_find", {"project": "shop", "environment": "Production", "since": since, "until": until}
    )
    assert [h["hour"] for h in found["hours"]] == [(hour - timedelta(hours=h)).isoformat() for h in (2, 1, 0)]
    assert all(h["blobs"] == 1 and h["bytes"] > 0 for h in found["hours"])
    last_hour = (hour).isoformat()
    started = await dxp.call(
        ORG_A,
        "analyze_logs",
        {"project": "shop", "environment": "Production", "since": last_hour, "until": until},
    )
    report = (await _result(dxp, started["logs_job"]))["report"]
    assert report["requests"] > 0 and report["errors"] > 0  # the sandbox's Production has a burst that hour
    assert dxp.logs is not None
    sources = await dxp.logs.call_tool(ORG_A, "sources", {})
    assert [s["name"] for s in sources["sources"]] == ["dxp-shop-Production-insights-logs-appservicehttplogs"]
    assert "sig=" not in "\n".join(dxp.seen)  # no SAS link in any answer dxp gave
