"""Log analysis handed to log-analyzer over the bus, as the caller (its stamp, or the job's
ticket): a fresh read-only link of the log container becomes the org's log-analyzer source
`dxp-<project>-<env>-<container>` (`logs_source_add`), analysed by `logs_analyze_source`;
`compare` waits for two such analyses and asks `logs_compare` for the verdict."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from mcpmesh.dxp import ops
from mcpmesh.dxp.ops import Session
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.service import JobContext
from mcpmesh.service.call import ServiceCaller

Range = tuple[str | None, str | None]


async def hand_off(
    caller: ServiceCaller, s: Session, environment: str, container: str, span: Range, name: str
) -> dict[str, Any]:
    """Add (or refresh) the container as a log-analyzer source and start its analysis over
    `span`; the log-analyzer job's view."""
    link = await ops.sas_link(s, environment, container, False, 24)
    source_name = ops.log_source_name(s.project.name, environment, container)
    source = await caller.call_tool(
        "logs", "source_add", {"name": source_name, "sas_url": link}, on_progress=None
    )
    args = {
        "source_id": source["structuredContent"]["source_id"],
        "name": name,
        "since": span[0],
        "until": span[1],
    }
    job = await caller.call_tool(
        "logs", "analyze_source", {k: v for k, v in args.items() if v is not None}, on_progress=None
    )
    return job["structuredContent"]  # type: ignore[no-any-return]


async def windows(s: Session, deployment_id: str | None, given: tuple[str | None, ...]) -> list[Range]:
    """[baseline, candidate]: the hour before a deployment's start and the hour after its end,
    or the four times given."""
    if deployment_id is not None:
        d = await s.get(f"deployments/{ops.deployment_id_of(deployment_id)}")
        start = datetime.fromisoformat(str(d["startTime"]).replace("Z", "+00:00"))
        end = datetime.fromisoformat(str(d.get("endTime") or d["startTime"]).replace("Z", "+00:00"))
        return [
            ((start - timedelta(hours=1)).isoformat(), start.isoformat()),
            (end.isoformat(), (end + timedelta(hours=1)).isoformat()),
        ]
    names = ("baseline_since", "baseline_until", "candidate_since", "candidate_until")
    times = [ops.iso_time(value, name) for value, name in zip(given, names, strict=True)]
    if not all(times):
        raise MeshException(
            ErrorCode.INVALID_REQUEST,
            "give deployment_id, or all of baseline_since/until and candidate_since/until",
        )
    return [(times[0], times[1]), (times[2], times[3])]


async def _analysis(job: JobContext, logs_job_id: str, poll_s: float) -> str:
    """Wait for a log-analyzer job; its analysis id (its failure, as log-analyzer reported it)."""
    while True:
        view = (await job.call_tool("logs", "job_status", {"job_id": logs_job_id}, on_progress=None))[
            "structuredContent"
        ]
        if view["status"] not in ("queued", "running"):
            break
        await asyncio.sleep(poll_s)
    # A failed analysis raises here as log-analyzer reported it.
    result = await job.call_tool("logs", "job_result", {"job_id": logs_job_id}, on_progress=None)
    return str(result["structuredContent"]["analysis_id"])


async def compare(
    job: JobContext, s: Session, environment: str, container: str, ranges: list[Range], poll_s: float
) -> dict[str, Any]:
    sides = ("baseline", "candidate")
    started = {}
    for side, span in zip(sides, ranges, strict=True):
        started[side] = await hand_off(
            job, s, environment, container, span, f"{s.project.name} {environment} {side}"
        )
    await job.progress(1, 4, "both analyses started")
    ids = {}
    for n, side in enumerate(sides, start=2):
        ids[side] = await _analysis(job, started[side]["job_id"], poll_s)
        await job.progress(n, 4, f"{side} analysed")
    verdict = await job.call_tool(
        "logs",
        "compare",
        {"baseline_id": ids["baseline"], "candidate_id": ids["candidate"]},
        on_progress=None,
    )
    return {
        "baseline": {"since": ranges[0][0], "until": ranges[0][1], "analysis_id": ids["baseline"]},
        "candidate": {"since": ranges[1][0], "until": ranges[1][1], "analysis_id": ids["candidate"]},
        "comparison": verdict["structuredContent"],
    }
