"""A job's record: one document in the org's own `<service>_jobs` collection, and its view.

Document fields: `_id` (job id), `tool`, `args` (JSON arguments, kept for a resume), `status`,
`progress`, `total`, `message`, `partial`, `result` (the tool's `CallToolResult`, JSON),
`error` (`MeshError` fields), `checkpoint`, `resumable`, `attempts`, `started_by` (key id),
`owner` (replica id) and `lease` (id of the current run) while active, `heartbeat_at`,
`deadline_at`, `created_at`, `updated_at`, `finished_at`, `expires_at` (TTL index), and
`idempotency` (a digest of the tool and its idempotency key's value) when the start carried one.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec

from mcpmesh.proto.errors import RETRYABLE, ErrorCode, MeshError, MeshException
from mcpmesh.proto.jobs import ACTIVE, JobStatus, JobView, is_job_id
from mcpmesh.store import Collection, Index, TenantStore

JOBS_INDEXES: Final = [
    Index(keys=[("expires_at", 1)], expire_after_seconds=0),  # deleted once expires_at passed
    Index(keys=[("status", 1), ("heartbeat_at", 1)]),  # the sweeper: active jobs with an old heartbeat
    Index(keys=[("status", 1), ("_id", -1)]),  # `jobs` filtered by status, newest first
    # One job per idempotency key and tool: the insert is the claim, a racing second start fails it.
    Index(keys=[("idempotency", 1)], unique=True, sparse=True, name="idempotency_unique"),
]
#: Status values of jobs a replica owns, as stored.
ACTIVE_VALUES: Final = sorted(status.value for status in ACTIVE)
#: heartbeat_at of a released job: older than any lease, so the next sweep takes it.
RELEASED_AT: Final = datetime(1970, 1, 1, tzinfo=UTC)


def jobs_kind(service: str) -> str:
    """The per-tenant store kind holding a service's job records (reserved by the kit)."""
    return f"{service}_jobs"


def utcnow() -> datetime:
    """Now, to the millisecond: what BSON stores, so a view built before and after a read agree."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_job_id() -> str:
    """12 hex digits of the time in milliseconds, then 16 random ones: ids sort by creation."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(8)}"


def idempotency_digest(tool: str, value: Any) -> str:
    """What a keyed start is recorded under: the tool and the key's value (JSON), hashed."""
    return hashlib.sha256(tool.encode() + b"\0" + msgspec.json.encode(value)).hexdigest()


def mesh_error(code: ErrorCode, message: str) -> MeshError:
    return MeshError(code=code, message=message, retryable=code in RETRYABLE)


async def jobs_collection(tenant: TenantStore, kind: str) -> Collection:
    return await tenant.collection(kind)


def checked_job_id(job_id: str) -> str:
    if not is_job_id(job_id):
        raise MeshException(
            ErrorCode.INVALID_REQUEST,
            "job_id must be the 28-character id (lowercase hex) a job tool or `jobs` returned",
        )
    return job_id


async def find_job(
    tenant: TenantStore, kind: str, job_id: str, *, projection: dict[str, int] | None = None
) -> dict[str, Any]:
    """The org's job record; NOT_FOUND when this org has no such job (another org's id included)."""
    collection = await jobs_collection(tenant, kind)
    found: dict[str, Any] | None = await collection.find_one({"_id": checked_job_id(job_id)}, projection)
    if found is None:
        raise MeshException(
            ErrorCode.NOT_FOUND,
            f"no job {job_id} in this organization: it never existed here or expired after it finished",
        )
    return found


def finished_fields(status: JobStatus, now: datetime, retention: timedelta) -> dict[str, Any]:
    """What every transition into a finished state sets: no owner any more, a TTL, no checkpoint,
    no ticket (nothing more to call other services for)."""
    return {
        "status": status.value,
        "finished_at": now,
        "updated_at": now,
        "expires_at": now + retention,
        "owner": None,
        "lease": None,
        "checkpoint": None,
        "ticket": None,
    }


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # drivers without tz_aware hand back naive UTC
        value = value.replace(tzinfo=UTC)
    return value.isoformat().replace("+00:00", "Z")


def view_of(doc: dict[str, Any], *, with_partial: bool = True) -> JobView:
    error = doc.get("error")
    return JobView(
        job_id=doc["_id"],
        tool=doc["tool"],
        status=JobStatus(doc["status"]),
        progress=doc.get("progress"),
        total=doc.get("total"),
        message=doc.get("message"),
        partial=doc.get("partial") if with_partial else None,
        error=msgspec.convert(error, MeshError) if error else None,
        resumable=bool(doc.get("resumable")),
        attempts=int(doc.get("attempts", 1)),
        started_by=doc["started_by"],
        created_at=_iso(doc["created_at"]) or "",
        updated_at=_iso(doc["updated_at"]) or "",
        finished_at=_iso(doc.get("finished_at")),
        expires_at=_iso(doc.get("expires_at")),
    )


def view_json(doc: dict[str, Any], *, with_partial: bool = True) -> dict[str, Any]:
    """The view as the plain JSON a tool returns."""
    built: dict[str, Any] = msgspec.to_builtins(view_of(doc, with_partial=with_partial))
    return built


def json_size(value: Any) -> int:
    return len(msgspec.json.encode(value))
