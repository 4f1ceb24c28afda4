"""The work behind the tools: inline analysis, a source's analysis as a job, compare."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mcpmesh.logs import blobs, saved, sources
from mcpmesh.logs.analysis import Analysis, LineSplitter
from mcpmesh.logs.compare import compare
from mcpmesh.logs.settings import LogsSettings
from mcpmesh.logs.times import minute, time_range
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.service import JobContext
from mcpmesh.store import TenantStore

#: A job reports progress after each blob and every this many bytes read.
PROGRESS_BYTES = 16 * 1024 * 1024
#: Lines analysed between two yields to the event loop (inline input runs on the loop).
_YIELD_EVERY = 20_000


@dataclass
class LogsApp:
    settings: LogsSettings
    #: Awaited after each blob a source job has read and checkpointed (tests hold a job there).
    after_blob: Callable[[str], Awaitable[None]] | None = None


def _top(top: int) -> int:
    if not 1 <= top <= 100:
        raise MeshException(ErrorCode.INVALID_REQUEST, "top must be 1-100")
    return top


async def analyze_inline(
    app: LogsApp, lines: list[str], since: str | None, until: str | None, top: int
) -> dict[str, Any]:
    size = sum(len(line) for line in lines)  # characters: a lower bound of the UTF-8 bytes
    encoded = [line.encode() for line in lines] if size <= app.settings.max_inline_bytes else []
    if size > app.settings.max_inline_bytes or sum(len(b) for b in encoded) > app.settings.max_inline_bytes:
        raise MeshException(
            ErrorCode.LIMIT_EXCEEDED,
            f"inline input is over {app.settings.max_inline_bytes} bytes: put the logs in a blob container "
            "and use source_add + analyze_source",
        )
    start, end = time_range(since, until)
    analysis = Analysis(app.settings.limits, minute(start), minute(end))
    for i, raw in enumerate(encoded):
        for line in raw.split(b"\n"):  # an element may hold several lines
            analysis.feed(line)
        if i % _YIELD_EVERY == _YIELD_EVERY - 1:
            await asyncio.sleep(0)
    return analysis.report(top=_top(top))


async def analyze_source(
    app: LogsApp,
    job: JobContext,
    source_id: str,
    since: str | None,
    until: str | None,
    name: str | None,
    top: int,
) -> dict[str, Any]:
    """Read every blob of the source in the range (resuming after the last one a previous run
    finished), merge into one analysis, save it, return its id and report."""
    store: TenantStore = job.store
    _top(top)
    start, end = time_range(since, until)
    source = await sources.get(store, source_id)
    url = await sources.sas_url(job.secrets, source_id)
    state = await saved.load_partial(store, job.id) if job.checkpoint else None
    analysis = (
        Analysis.from_state(state) if state else Analysis(app.settings.limits, minute(start), minute(end))
    )
    done = (state or {}).get("_done") or {"blobs": 0, "bytes": 0, "after": "", "not_logs": []}
    async with blobs.container(url.reveal(), app.settings.read_timeout_s) as client:
        listed, outside = await blobs.list_blobs(client, source["prefix"], start, end, app.settings.max_blobs)
        total = len(listed)
        told = [done["bytes"]]

        async def tell() -> None:
            told[0] = done["bytes"]
            await job.progress(
                done["blobs"],
                total,
                f"{done['blobs']}/{total} blobs, {done['bytes']} bytes, {analysis.counts['lines']} lines",
                partial=_partial(done, analysis),
            )

        async def count(n: int) -> None:  # per chunk: progress again every PROGRESS_BYTES
            done["bytes"] += n
            if done["bytes"] - told[0] >= PROGRESS_BYTES:
                await tell()

        await tell()
        for blob in (b for b in listed if b.name > done["after"]):
            lines_before, bad_before = analysis.counts["lines"], analysis.counts["malformed"]
            await blobs.read_blob(client, blob.name, LineSplitter(analysis), count)
            lines = analysis.counts["lines"] - lines_before
            if lines and analysis.counts["malformed"] - bad_before == lines and len(done["not_logs"]) < 10:
                done["not_logs"].append(blob.name)
            done["blobs"] += 1
            done["after"] = blob.name
            await saved.save_partial(store, job.id, {**analysis.state(), "_done": done})
            await job.save_checkpoint({"after": blob.name})
            await tell()
            if app.after_blob is not None:
                await app.after_blob(blob.name)
    report = analysis.report(top=top)
    report["blobs"] = {
        "read": done["blobs"],
        "bytes": done["bytes"],
        "not_log_blobs": done["not_logs"],
        "outside_hourly_layout": outside,
    }
    origin = {
        "source_id": source_id,
        "source_name": source["name"],
        "since": since,
        "until": until,
        "job_id": job.id,
    }
    analysis_id = await saved.save(
        store, name=name or f"{source['name']} {since or ''}..{until or ''}", origin=origin, report=report
    )
    await saved.drop_partial(store, job.id)
    return {"analysis_id": analysis_id, "report": report}


def _partial(done: dict[str, Any], analysis: Analysis) -> dict[str, Any]:
    return {
        "blobs": done["blobs"],
        "bytes": done["bytes"],
        "lines": analysis.counts["lines"],
        "requests": analysis.requests,
        "malformed": analysis.counts["malformed"],
    }


async def compare_saved(store: TenantStore, baseline_id: str, candidate_id: str) -> dict[str, Any]:
    baseline = await saved.get(store, baseline_id)
    candidate = await saved.get(store, candidate_id)
    return {
        "baseline_id": baseline_id,
        "candidate_id": candidate_id,
        **compare(baseline["report"], candidate["report"]),
    }
