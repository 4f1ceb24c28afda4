"""The operations behind the tools: a `Session` is one org's project for one call or job
(credentials revealed for signing only), and each function one API operation or a few."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pymongo.errors import DuplicateKeyError

from mcpmesh.dxp import projects
from mcpmesh.dxp.client import DxpClient, Project
from mcpmesh.dxp.settings import DxpSettings
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.secrets import TenantSecrets
from mcpmesh.store import Index, TenantStore

STARTS: Final = "starts"
KINDS: Final = {STARTS: [Index(keys=[("expires_at", 1)], expire_after_seconds=0)]}
START_KEEP: Final = timedelta(days=7)
PENDING_WAIT_S: Final = 20.0
SETTLED: Final = frozenset({"AwaitingVerification", "Succeeded", "Failed", "Reset"})
DATABASES: Final = ("epicms", "epicommerce")
PRODUCTION: Final = "Production"
_OP_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_CONTAINER = re.compile(r"^[a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9])$")


def _bad(message: str) -> MeshException:
    return MeshException(ErrorCode.INVALID_REQUEST, message)


@dataclass
class DxpApp:
    settings: DxpSettings
    client: DxpClient


@dataclass
class Session:
    app: DxpApp
    store: TenantStore
    project: Project
    doc: dict[str, Any]

    async def get(self, path: str, query: str = "") -> Any:
        return await self.app.client.request(self.store, self.project, "GET", path, resend=True, query=query)

    async def post(self, path: str, body: dict[str, Any], *, resend: bool) -> Any:
        return await self.app.client.request(self.store, self.project, "POST", path, body, resend=resend)

    def env(self, environment: str) -> str:
        return projects.environment(self.doc, environment)


async def session(app: DxpApp, store: TenantStore, vault: TenantSecrets, project: str) -> Session:
    loaded, doc = await projects.load(store, vault, project)
    return Session(app, store, loaded, doc)


def deployment_id_of(value: str) -> str:
    try:
        return str(uuid.UUID(value.strip()))
    except (ValueError, AttributeError):
        raise _bad("deployment_id must be a deployment's id (a UUID, see dxp_deployments)") from None


def database_of(value: str) -> str:
    if value not in DATABASES:
        raise _bad(f"database must be one of {', '.join(DATABASES)}")
    return value


def container_of(value: str) -> str:
    if not isinstance(value, str) or not _CONTAINER.fullmatch(value):
        raise _bad("container must be a storage container's name (see dxp_storage_containers)")
    return value


def production_guard(target: str, confirm: bool, what: str) -> None:
    if target == PRODUCTION and not confirm:
        raise _bad(f"{what} touches Production: call again with confirm_production=true to go ahead")


# -- deployments ---------------------------------------------------------------------------------


def summary(d: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "id",
        "status",
        "percentComplete",
        "startTime",
        "endTime",
        "validationLinks",
        "deploymentWarnings",
        "deploymentErrors",
        "parameters",
    )
    return {k: d.get(k) for k in keys}


def start_body(
    session: Session,
    target: str,
    source_environment: str | None,
    source_apps: list[str] | None,
    packages: list[str] | None,
    include_blob: bool,
    include_db: bool,
    maintenance_page: bool,
    zero_downtime_mode: str | None,
    direct_deploy: bool,
) -> dict[str, Any]:
    """The API's start body; `invalid_request` for a combination it would refuse."""
    body: dict[str, Any] = {"targetEnvironment": session.env(target)}
    if bool(packages) == bool(source_environment):
        raise _bad(
            "give either packages (names uploaded to the package location) or source_environment, not both"
        )
    if packages:
        if include_blob or include_db:
            raise _bad("include_blob/include_db copy content from an environment: use source_environment")
        body["packages"] = list(packages)
    else:
        source = session.env(str(source_environment))
        if source == target:
            raise _bad("source_environment and target_environment must differ")
        body["sourceEnvironment"] = source
        content_copy = include_blob or include_db
        body["sourceApps"] = (
            list(source_apps) if source_apps is not None else ([] if content_copy else ["cms"])
        )
        body["includeBlob"], body["includeDb"] = include_blob, include_db
    if zero_downtime_mode is not None:
        if zero_downtime_mode not in ("ReadOnly", "ReadWrite"):
            raise _bad("zero_downtime_mode must be ReadOnly or ReadWrite")
        body["zeroDowntimeMode"] = zero_downtime_mode
    body["maintenancePage"], body["directDeploy"] = maintenance_page, direct_deploy
    return body


async def start_once(session: Session, body: dict[str, Any], op_id: str | None) -> dict[str, Any]:
    """POST the start, at most once per `op_id` in this org: a repeat answers the first start's
    deployment (`replayed: true`); the same op_id with other arguments is a `conflict`."""
    if not op_id:
        return {
            "deployment": summary(await session.post("deployments", body, resend=False)),
            "replayed": False,
        }
    if not _OP_ID.fullmatch(op_id):
        raise _bad("op_id must be 1-128 letters, digits, '_', '.', ':' or '-'")
    digest = hashlib.sha256(
        json.dumps([session.project.project_id, body], sort_keys=True).encode()
    ).hexdigest()
    starts = await session.store.collection(STARTS)
    now = datetime.now(UTC)
    try:
        await starts.insert_one(
            {
                "_id": op_id,
                "digest": digest,
                "state": "pending",
                "created_at": now,
                "expires_at": now + START_KEEP,
            }
        )
    except DuplicateKeyError:
        return await _replay(session, starts, op_id, digest)
    try:
        started = await session.post("deployments", body, resend=False)
    except MeshException as exc:
        if exc.error.code is ErrorCode.UNAVAILABLE and not exc.error.retryable:  # outcome unknown
            await starts.update_one({"_id": op_id}, {"$set": {"state": "unknown"}})
        else:  # refused: nothing started, the op_id may be used again
            await starts.delete_one({"_id": op_id})
        raise
    await starts.update_one({"_id": op_id}, {"$set": {"state": "done", "deployment_id": started["id"]}})
    return {"deployment": summary(started), "replayed": False}


async def _replay(session: Session, starts: Any, op_id: str, digest: str) -> dict[str, Any]:
    """The first start's deployment; a start still under way is waited for (a few seconds)."""
    claim = await starts.find_one({"_id": op_id})
    for _ in range(int(PENDING_WAIT_S / 0.1)):
        if claim is None or claim["state"] != "pending":
            break
        await asyncio.sleep(0.1)
        claim = await starts.find_one({"_id": op_id})
    if claim is None or claim["digest"] != digest:
        raise MeshException(
            ErrorCode.CONFLICT, f"op_id {op_id!r} already started another deployment: use a new op_id"
        )
    if claim.get("deployment_id"):
        d = await session.get(f"deployments/{claim['deployment_id']}")
        return {"deployment": summary(d), "replayed": True}
    raise MeshException(
        ErrorCode.CONFLICT,
        f"the start with op_id {op_id!r} is in progress or its outcome is unknown: look at dxp_deployments before starting again",
    )


async def monitor(
    session: Session,
    deployment_id: str,
    report: Callable[[float, str, dict[str, Any]], Awaitable[None]],
) -> dict[str, Any]:
    """Read the deployment every `monitor_poll_s` until it settles (awaiting verification or
    over), reporting its percentage; its last state."""
    path = f"deployments/{deployment_id_of(deployment_id)}"
    while True:
        d = await session.get(path)
        status = str(d.get("status"))
        percent = float(d.get("percentComplete") or 0)
        await report(percent, f"{status} ({percent:.0f}%)", {"status": status})
        if status in SETTLED:
            return {"deployment": summary(d), "next": NEXT.get(status, "")}
        await asyncio.sleep(session.app.settings.monitor_poll_s)


NEXT: Final = {
    "AwaitingVerification": "verify the slot (validationLinks), then dxp_deployment_complete or dxp_deployment_reset",
    "Failed": "read deploymentErrors; dxp_deployment_reset to clean the slot",
}


# -- storage -------------------------------------------------------------------------------------


async def containers(s: Session, environment: str, writable: bool = False) -> list[str]:
    found = await s.get(
        f"environments/{s.env(environment)}/storagecontainers", "writable=true" if writable else ""
    )
    names = found.get("storageContainers", []) if isinstance(found, dict) else found
    return [str(n) for n in names or []]


async def sas_link(s: Session, environment: str, container: str, writable: bool, hours: int) -> str:
    """A container SAS URL from the API (to hand on, never to log)."""
    found = await s.post(
        f"environments/{s.env(environment)}/storagecontainers/{container_of(container)}/saslink",
        {"RetentionHours": hours, "Writable": writable},
        resend=True,  # a second link changes nothing
    )
    link = (found.get("sasLink") or found.get("url")) if isinstance(found, dict) else found
    if not isinstance(link, str):
        raise MeshException(
            ErrorCode.UNAVAILABLE, "the DXP API answered no SAS link: retry later", retryable=True
        )
    return link


# -- logs ----------------------------------------------------------------------------------------


def iso_time(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise _bad(f"{what} must be an ISO 8601 time such as 2026-12-01T09:00:00Z") from None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def log_source_name(project: str, environment: str, container: str) -> str:
    """The log-analyzer source name for a project's environment's container (≤ 64 chars)."""
    name = f"dxp-{project}-{environment}-{container}"
    if len(name) <= 64:
        return name
    return f"{name[:47]}-{hashlib.sha256(name.encode()).hexdigest()[:16]}"
