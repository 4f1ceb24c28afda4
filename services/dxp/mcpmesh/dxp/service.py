"""The dxp service: Optimizely DXP operations for every org, with that org's own credentials.

`build_service()` makes a fresh MeshService whose lifespan opens the API client the tools
share; project credentials are the org's sealed secrets (`secrets=True`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from mcp.server.mcpserver import Context

from mcpmesh.dxp import limits, loganalysis, ops, projects, storage
from mcpmesh.dxp.client import DxpClient
from mcpmesh.dxp.ops import DxpApp, Session
from mcpmesh.dxp.settings import DxpSettings
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.service import TOOL_SECRET_ARGS_META, Call, JobContext, MeshService, call_of

INSTRUCTIONS = """\
Optimizely DXP (Deployment API) operations with your organization's own API credentials.
Register a project once (dxp_project_register: project id, client key and secret — kept
sealed, never shown again), then: deployments (list, get, start, monitor as a job, complete,
reset), database exports, storage containers and read-only SAS links, log containers and log
analysis through log-analyzer (analyze_logs, compare_logs). Anything touching Production needs
confirm_production=true and is recorded in the audit log. Start takes an op_id: a retried
start with the same op_id never starts twice."""

LOG_CONTAINER = "insights-logs-appservicehttplogs"


def build_service(settings: DxpSettings | None = None) -> MeshService:
    """A fresh dxp service (settings from the environment unless given)."""
    settings = settings or DxpSettings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(service: MeshService) -> AsyncIterator[DxpApp]:
        client = DxpClient(settings)
        try:
            yield DxpApp(settings, client)
        finally:
            await client.close()

    service = MeshService(
        "dxp",
        description="Optimizely DXP deployments, exports, storage and logs, per tenant",
        instructions=INSTRUCTIONS,
        store_kinds={**projects.KINDS, **limits.KINDS, **ops.KINDS},
        secrets=True,  # the projects' client keys and secrets
        lifespan=lifespan,
    )

    async def open_(ctx: Context, project: str) -> tuple[Call, Session]:
        call = call_of(ctx)
        return call, await ops.session(call.state(DxpApp), call.store, call.secrets, project)

    async def audited(call: Call, s: Session, action: str, env: str, run: Any, detail: dict[str, str]) -> Any:
        """Run `run()`; a Production operation is recorded with its outcome."""
        if env != ops.PRODUCTION:
            return await run()
        target = f"{s.project.name}/{env}"
        detail = {"project_id": s.project.project_id, "key": call.stamp.sub, **detail}
        try:
            result = await run()
        except MeshException as exc:
            await call.audit(action, target, str(exc.error.code), detail)
            raise
        await call.audit(action, target, "ok", detail)
        return result

    # -- projects -------------------------------------------------------------------------------

    @service.tool(
        access="write",
        idempotent=True,
        destructive=True,
        open_world=False,
        meta={TOOL_SECRET_ARGS_META: ["client_key", "client_secret"]},
    )
    async def project_register(
        name: str,
        project_id: str,
        client_key: str,
        client_secret: str,
        ctx: Context,
        api_url: str | None = None,
        environments: list[str] | None = None,
    ) -> dict[str, Any]:
        """Register a DXP project (or replace the one of that name): its id (UUID), the API
        key's client key and client secret (kept sealed, never shown again), optionally its
        API URL and its environments (default Integration, Preproduction, Production)."""
        call = call_of(ctx)
        app = call.state(DxpApp)
        return await projects.register(
            call.store,
            call.secrets,
            name=name,
            project_id=project_id,
            client_key=client_key,
            client_secret=client_secret,
            api_url=api_url or app.settings.api_url,
            allow_http=app.settings.allow_http,
            environments=environments,
        )

    @service.tool(access="read", name="projects", open_world=False)
    async def projects_list(ctx: Context) -> dict[str, Any]:
        """Your organization's DXP projects (never their credentials)."""
        return {"projects": await projects.listing(call_of(ctx).store)}

    @service.tool(access="write", idempotent=True, destructive=True, open_world=False)
    async def project_remove(name: str, ctx: Context) -> dict[str, Any]:
        """Remove a project and its sealed credentials."""
        call = call_of(ctx)
        return await projects.remove(call.store, call.secrets, name)

    @service.tool(access="read", budget_s=120)
    async def test_connection(project: str, ctx: Context) -> dict[str, Any]:
        """Check the project's credentials: deployments readable, and per environment whether
        its storage containers can be listed."""
        _, s = await open_(ctx, project)
        out: dict[str, Any] = {"project": project, "deployments": "ok", "environments": {}}
        await s.get("deployments")
        for env in s.doc["environments"]:
            try:
                await s.get(f"environments/{env}/storagecontainers")
                out["environments"][env] = "ok"
            except MeshException as exc:
                if exc.error.code is ErrorCode.RATE_LIMITED:
                    raise
                out["environments"][env] = f"{exc.error.code}: {exc.error.message}"
        return out

    @service.tool(access="read", open_world=False)
    async def rate_limit_status(project: str, ctx: Context) -> dict[str, Any]:
        """The project's DXP requests this minute and hour against its client-side limits
        (shared by every replica)."""
        call = call_of(ctx)
        doc = await projects.find(call.store, project)
        return {
            "project": project,
            **await limits.status(call.store, doc["project_id"], (settings.per_minute, settings.per_hour)),
        }

    # -- deployments ----------------------------------------------------------------------------

    @service.tool(access="read")
    async def deployments(project: str, ctx: Context, limit: int = 20) -> dict[str, Any]:
        """The project's deployments, newest first (at most `limit`, 1-100)."""
        if not 1 <= limit <= 100:
            raise MeshException(ErrorCode.INVALID_REQUEST, "limit must be 1-100")
        _, s = await open_(ctx, project)
        found = await s.get("deployments")
        found = sorted(found or [], key=lambda d: str(d.get("startTime") or ""), reverse=True)
        return {"deployments": [ops.summary(d) for d in found[:limit]]}

    @service.tool(access="read")
    async def deployment_get(project: str, deployment_id: str, ctx: Context) -> dict[str, Any]:
        """One deployment: status, percentage, validation links, warnings and errors."""
        _, s = await open_(ctx, project)
        return ops.summary(await s.get(f"deployments/{ops.deployment_id_of(deployment_id)}"))

    @service.tool(access="write", idempotent=False, destructive=True, idempotency_key="op_id", budget_s=120)
    async def deployment_start(
        project: str,
        target_environment: str,
        ctx: Context,
        source_environment: str | None = None,
        source_apps: list[str] | None = None,
        packages: list[str] | None = None,
        include_blob: bool = False,
        include_db: bool = False,
        maintenance_page: bool = False,
        zero_downtime_mode: str | None = None,
        direct_deploy: bool = False,
        confirm_production: bool = False,
        op_id: str | None = None,
    ) -> dict[str, Any]:
        """Start a deployment into target_environment: code from packages, or from
        source_environment (source_apps, default ["cms"]); a content copy is
        source_environment with include_blob/include_db. Production needs
        confirm_production=true. Give an op_id: the same op_id again answers the first start
        (replayed: true) and never starts a second deployment."""
        call, s = await open_(ctx, project)
        body = ops.start_body(
            s, target_environment, source_environment, source_apps, packages,
            include_blob, include_db, maintenance_page, zero_downtime_mode, direct_deploy,
        )  # fmt: skip

        async def run() -> dict[str, Any]:
            ops.production_guard(target_environment, confirm_production, "this deployment")
            return await ops.start_once(s, body, op_id)

        return await audited(call, s, "deployment_start", target_environment, run, {"op_id": op_id or ""})  # type: ignore[no-any-return]

    @service.job_tool(access="read", resumable=True, budget_s=3 * 3600)
    async def deployment_monitor(project: str, deployment_id: str, job: JobContext) -> dict[str, Any]:
        """Follow a deployment until it settles (AwaitingVerification, Succeeded, Failed or
        Reset) as a job: progress is its percentage; the result its last state and what next."""
        s = await ops.session(service.state(DxpApp), job.store, job.secrets, project)

        async def report(percent: float, message: str, partial: dict[str, Any]) -> None:
            await job.progress(percent, 100, message, partial=partial)

        return await ops.monitor(s, deployment_id, report)

    async def _transition(
        ctx: Context,
        project: str,
        deployment_id: str,
        action: str,
        body: dict[str, Any],
        confirm: bool,
        allowed: tuple[str, ...],
    ) -> dict[str, Any]:
        call, s = await open_(ctx, project)
        path = f"deployments/{ops.deployment_id_of(deployment_id)}"
        current = await s.get(path)
        target = str((current.get("parameters") or {}).get("targetEnvironment") or "")

        async def run() -> dict[str, Any]:
            ops.production_guard(target, confirm, f"this {action}")
            if current.get("status") not in allowed:
                raise MeshException(
                    ErrorCode.CONFLICT,
                    f"deployment {deployment_id} is {current.get('status')}: {action} needs it {' or '.join(allowed)}",
                )
            return ops.summary(await s.post(f"{path}/{action}", body, resend=False))

        return await audited(call, s, f"deployment_{action}", target, run, {"deployment_id": deployment_id})  # type: ignore[no-any-return]

    @service.tool(access="write", destructive=True, budget_s=60)
    async def deployment_complete(
        project: str, deployment_id: str, ctx: Context, confirm_production: bool = False
    ) -> dict[str, Any]:
        """Complete a deployment awaiting verification (swaps the slot live). Production needs
        confirm_production=true."""
        return await _transition(
            ctx, project, deployment_id, "complete", {}, confirm_production, ("AwaitingVerification",)
        )

    @service.tool(access="write", destructive=True, budget_s=60)
    async def deployment_reset(
        project: str,
        deployment_id: str,
        ctx: Context,
        db_rollback: bool = False,
        confirm_production: bool = False,
    ) -> dict[str, Any]:
        """Reset (abort) a deployment in progress, awaiting verification or failed; db_rollback
        also rolls the database back. Production needs confirm_production=true."""
        return await _transition(
            ctx, project, deployment_id, "reset", {"resetWithDbRollback": db_rollback}, confirm_production,
            ("InProgress", "AwaitingVerification", "Failed"),
        )  # fmt: skip

    # -- database exports -----------------------------------------------------------------------

    def export_path(s: Session, environment: str, database: str) -> str:
        return f"environments/{s.env(environment)}/databases/{ops.database_of(database)}/exports"

    @service.tool(access="write", destructive=False, budget_s=60)
    async def export_start(
        project: str, environment: str, ctx: Context, database: str = "epicms", retention_hours: int = 24
    ) -> dict[str, Any]:
        """Start a database export (a .bacpac kept retention_hours, 1-168); follow it with
        export_status."""
        if not 1 <= retention_hours <= 168:
            raise MeshException(ErrorCode.INVALID_REQUEST, "retention_hours must be 1-168")
        _, s = await open_(ctx, project)
        return await s.post(
            export_path(s, environment, database), {"retentionHours": retention_hours}, resend=False
        )  # type: ignore[no-any-return]

    @service.tool(access="read")
    async def export_status(
        project: str, environment: str, export_id: str, ctx: Context, database: str = "epicms"
    ) -> dict[str, Any]:
        """An export's status, with its downloadLink (a read-only SAS URL) once Succeeded."""
        _, s = await open_(ctx, project)
        return await s.get(f"{export_path(s, environment, database)}/{ops.deployment_id_of(export_id)}")  # type: ignore[no-any-return]

    @service.tool(access="read")
    async def exports(
        project: str, environment: str, ctx: Context, database: str = "epicms"
    ) -> dict[str, Any]:
        """Recent exports of a database of an environment."""
        _, s = await open_(ctx, project)
        return {"exports": await s.get(export_path(s, environment, database))}

    # -- storage and logs -----------------------------------------------------------------------

    @service.tool(access="read")
    async def storage_containers(
        project: str, environment: str, ctx: Context, writable: bool = False
    ) -> dict[str, Any]:
        """The environment's storage containers (writable=true: only those you may write)."""
        _, s = await open_(ctx, project)
        return {"containers": await ops.containers(s, environment, writable)}

    @service.tool(access="read")
    async def storage_sas_link(
        project: str, environment: str, container: str, ctx: Context, retention_hours: int = 24
    ) -> dict[str, Any]:
        """A read-only SAS URL of a storage container (valid retention_hours, 1-168). A
        writable link: storage_sas_link_writable (dxp:write)."""
        if not 1 <= retention_hours <= 168:
            raise MeshException(ErrorCode.INVALID_REQUEST, "retention_hours must be 1-168")
        _, s = await open_(ctx, project)
        return {
            "container": container,
            "writable": False,
            "sas_url": await ops.sas_link(s, environment, container, False, retention_hours),
        }

    @service.tool(access="write", destructive=False, idempotent=True)
    async def storage_sas_link_writable(
        project: str,
        environment: str,
        container: str,
        ctx: Context,
        retention_hours: int = 1,
        confirm_production: bool = False,
    ) -> dict[str, Any]:
        """A writable SAS URL of a storage container (Production needs confirm_production=true)."""
        if not 1 <= retention_hours <= 24:
            raise MeshException(ErrorCode.INVALID_REQUEST, "retention_hours must be 1-24 for a writable link")
        call, s = await open_(ctx, project)

        async def run() -> str:
            ops.production_guard(environment, confirm_production, "a writable link")
            return await ops.sas_link(s, environment, container, True, retention_hours)

        url = await audited(call, s, "storage_sas_link_writable", environment, run, {"container": container})
        return {"container": container, "writable": True, "sas_url": url}

    @service.tool(access="read")
    async def log_containers(project: str, environment: str, ctx: Context) -> dict[str, Any]:
        """The environment's log containers (HTTP and console logs of the App Service)."""
        _, s = await open_(ctx, project)
        return {"containers": [c for c in await ops.containers(s, environment) if "log" in c]}

    @service.tool(access="read", budget_s=120)
    async def logs_find(
        project: str,
        environment: str,
        ctx: Context,
        since: str | None = None,
        until: str | None = None,
        container: str = LOG_CONTAINER,
    ) -> dict[str, Any]:
        """The hours with logs in [since, until) of a log container: blobs and bytes per hour."""
        lo, hi = ops.iso_time(since, "since"), ops.iso_time(until, "until")
        _, s = await open_(ctx, project)
        link = await ops.sas_link(s, environment, container, False, 1)
        found = await storage.hours_in_range(
            link,
            datetime.fromisoformat(lo) if lo else None,
            datetime.fromisoformat(hi) if hi else None,
            settings.timeout_s,
        )
        return {"container": container, "hours": found}

    @service.tool(access="write", destructive=False, budget_s=60)
    async def analyze_logs(
        project: str,
        environment: str,
        ctx: Context,
        since: str | None = None,
        until: str | None = None,
        container: str = LOG_CONTAINER,
    ) -> dict[str, Any]:
        """Analyse a log container's logs of [since, until) with log-analyzer (needs
        logs:write): answers its job; follow it with logs_job_status, read it with
        logs_job_result."""
        lo, hi = ops.iso_time(since, "since"), ops.iso_time(until, "until")
        call, s = await open_(ctx, project)
        job = await loganalysis.hand_off(
            call, s, environment, container, (lo, hi), f"{project} {environment}"
        )
        return {
            "logs_job": job,
            "next": "logs_job_status(job_id) until succeeded, then logs_job_result(job_id)",
        }

    @service.job_tool(access="write", budget_s=3600)
    async def compare_logs(
        project: str,
        environment: str,
        job: JobContext,
        deployment_id: str | None = None,
        baseline_since: str | None = None,
        baseline_until: str | None = None,
        candidate_since: str | None = None,
        candidate_until: str | None = None,
        container: str = LOG_CONTAINER,
    ) -> dict[str, Any]:
        """Compare two windows of logs with log-analyzer (needs logs:write), as a job: the hour
        before a deployment's start and the hour after its end (deployment_id), or the
        baseline_*/candidate_* ranges. Both are analysed, then compared: the result is the
        verdict (proceed / warning / rollback) with its reasons and both analysis ids."""
        s = await ops.session(service.state(DxpApp), job.store, job.secrets, project)
        given = (baseline_since, baseline_until, candidate_since, candidate_until)
        ranges = await loganalysis.windows(s, deployment_id, given)
        return await loganalysis.compare(job, s, environment, container, ranges, settings.monitor_poll_s)

    return service
