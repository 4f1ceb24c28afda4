"""The log-analyzer service: its tools, declared with the service kit.

`build_service()` makes a fresh MeshService whose lifespan makes the LogsApp (its settings) its
tools share; the SAS URLs are kept in the org's sealed secrets (`secrets=True`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from mcp.server.mcpserver import Context

from mcpmesh.logs import runs, saved, sources
from mcpmesh.logs.runs import LogsApp
from mcpmesh.logs.settings import LogsSettings
from mcpmesh.service import TOOL_SECRET_ARGS_META, JobContext, MeshService, call_of

INSTRUCTIONS = """\
Analysis of Azure App Service HTTP and console logs (JSON Lines, as kept in Optimizely DXP
storage): errors by status and path, TimeTaken percentiles, slowest paths, AI crawler traffic,
health score and verdict, per-minute/hour series with the windows where errors or latency
jumped, console errors grouped by signature, and compare(baseline, candidate) → proceed /
warning / rollback. Paste lines into analyze, or add a container SAS URL with source_add and
run analyze_source over a time range (a job: follow it with job_status, read it with
job_result); its result is saved (analyses, analysis_get) for compare."""


def build_service(settings: LogsSettings | None = None) -> MeshService:
    """A fresh log-analyzer service (settings from the environment unless given)."""
    settings = settings or LogsSettings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(service: MeshService) -> AsyncIterator[LogsApp]:
        yield LogsApp(settings=settings)

    service = MeshService(
        "logs",
        description="Streaming analysis of App Service logs, per tenant",
        instructions=INSTRUCTIONS,
        store_kinds={**sources.KINDS, **saved.KINDS},
        secrets=True,  # the sources' SAS URLs
        lifespan=lifespan,
    )

    def app_of(ctx: Context) -> tuple[LogsApp, Any]:
        call = call_of(ctx)
        return call.state(LogsApp), call.store

    @service.tool(access="read", open_world=False, budget_s=60)
    async def analyze(
        lines: list[str],
        ctx: Context,
        since: str | None = None,
        until: str | None = None,
        top: int = 20,
    ) -> dict[str, Any]:
        """Analyse log lines given inline (each element one JSON line, or several separated by
        newlines; at most LOGS_MAX_INLINE_BYTES in all), optionally only those in [since, until).
        Malformed lines are counted and sampled, never fatal."""
        app, _ = app_of(ctx)
        return await runs.analyze_inline(app, lines, since, until, top)

    @service.tool(
        access="write",
        idempotent=True,
        destructive=True,
        open_world=False,
        meta={TOOL_SECRET_ARGS_META: ["sas_url"]},
    )
    async def source_add(name: str, sas_url: str, ctx: Context, prefix: str = "") -> dict[str, Any]:
        """Add a log source: a container SAS URL (read + list permission) and an optional blob
        name prefix (e.g. resourceId=/SUBSCRIPTIONS/.../SITES/MYSITE/). The same name again
        replaces it. The URL is kept sealed and never shown again."""
        app, store = app_of(ctx)
        return await sources.add(
            store,
            call_of(ctx).secrets,
            name=name,
            sas_url=sas_url,
            prefix=prefix,
            allow_http=app.settings.allow_http,
        )

    @service.tool(access="read", name="sources", open_world=False)
    async def sources_list(ctx: Context) -> dict[str, Any]:
        """Your organization's log sources (never their SAS URLs: location, prefix, SAS expiry)."""
        _, store = app_of(ctx)
        return {"sources": await sources.listing(store)}

    @service.tool(access="write", idempotent=True, destructive=True, open_world=False)
    async def source_remove(source_id: str, ctx: Context) -> dict[str, Any]:
        """Remove a log source and its sealed SAS URL (saved analyses stay)."""
        _, store = app_of(ctx)
        return await sources.remove(store, call_of(ctx).secrets, source_id)

    @service.job_tool(access="write", resumable=True, budget_s=6 * 3600)
    async def analyze_source(
        source_id: str,
        job: JobContext,
        since: str | None = None,
        until: str | None = None,
        name: str | None = None,
        top: int = 20,
    ) -> dict[str, Any]:
        """Analyse a source's blobs whose hour overlaps [since, until) (all blobs without a range)
        as a job: progress counts blobs, bytes and lines; the result (analysis_id + report) is
        saved for analyses/analysis_get/compare. Resumes after the last blob read if its
        replica stops."""
        return await runs.analyze_source(service.state(LogsApp), job, source_id, since, until, name, top)

    @service.tool(access="read", open_world=False)
    async def analyses(ctx: Context, limit: int = 20) -> dict[str, Any]:
        """Your organization's saved analyses, newest first (summary figures)."""
        _, store = app_of(ctx)
        return {"analyses": await saved.listing(store, limit)}

    @service.tool(access="read", open_world=False)
    async def analysis_get(analysis_id: str, ctx: Context) -> dict[str, Any]:
        """A saved analysis with its whole report."""
        _, store = app_of(ctx)
        return await saved.show(store, analysis_id)

    @service.tool(access="write", idempotent=True, destructive=True, open_world=False)
    async def analysis_delete(analysis_id: str, ctx: Context) -> dict[str, Any]:
        """Delete a saved analysis."""
        _, store = app_of(ctx)
        return await saved.delete(store, analysis_id)

    @service.tool(access="read", open_world=False)
    async def compare(baseline_id: str, candidate_id: str, ctx: Context) -> dict[str, Any]:
        """Compare two saved analyses (e.g. before and after a deployment): verdict proceed,
        warning or rollback, with the reasons (error rate up >= 50% → rollback; health down
        >= 20 points, p95 up >= 100 ms, new console error signatures → warning)."""
        _, store = app_of(ctx)
        return await runs.compare_saved(store, baseline_id, candidate_id)

    return service
