"""Durable jobs as their tools report them: `<tool>` (start), `job_status`, `job_cancel`, `jobs`.

A job's record is kept by the service that owns the tool, in the org's own store; this is
the view every replica answers with. It maps onto an MCP task (2025-11-25): `job_id` is
`taskId`, queued/running are `working`, succeeded is `completed`, failed and cancelled keep
their names, `message` (or the error's message) is `statusMessage`, `created_at` and
`updated_at` are `createdAt` and `lastUpdatedAt`, `expires_at - created_at` is `ttl`.
"""

from __future__ import annotations

import enum
import re
from typing import Any, Final

import msgspec

from mcpmesh.proto.errors import MeshError


class JobStatus(enum.StrEnum):
    QUEUED = "queued"  # accepted; waiting for a free job slot on the replica that owns it
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: A job in one of these states is owned by a replica (lease + heartbeat).
ACTIVE: Final = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})
#: A job in one of these states never changes again.
FINISHED: Final = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})

#: Job ids are 12 hex digits of creation time in milliseconds and 16 random hex digits,
#: so they sort by creation time.
JOB_ID_PATTERN: Final = r"^[0-9a-f]{28}$"
_JOB_ID_RE: Final = re.compile(JOB_ID_PATTERN)


def is_job_id(value: object) -> bool:
    return isinstance(value, str) and _JOB_ID_RE.fullmatch(value) is not None


class JobView(msgspec.Struct, frozen=True, kw_only=True):
    """One job as `job_status`, `job_cancel`, `jobs` and a job tool's start report it."""

    job_id: str
    tool: str  # the job tool that started it, without the service prefix
    status: JobStatus
    progress: float | None = None  # last progress the handler reported
    total: float | None = None
    message: str | None = None  # last progress message; who cancelled it, once cancelled
    partial: Any = None  # last partial result the handler reported (JSON)
    error: MeshError | None = None  # why it failed (code, message, retryable)
    resumable: bool = False  # an interrupted run resumes from its checkpoint instead of failing
    attempts: int = 1  # runs so far (more than 1 after a resume)
    started_by: str  # key id (`sub` of the stamp) that started it
    created_at: str  # ISO 8601, UTC
    updated_at: str
    finished_at: str | None = None
    expires_at: str | None = None  # the record is deleted after this time


class JobList(msgspec.Struct, frozen=True, kw_only=True):
    """The `jobs` tool: this org's jobs, newest first."""

    jobs: list[JobView]
    next_cursor: str | None = None  # pass as `cursor` for the next (older) page


class StampRequest(msgspec.Struct, frozen=True, kw_only=True):
    """On `control.stamps.<service>`: a service asking the gateway for what lets a job call other
    services as its org. Either the `stamp` of the call starting job `job_id` (still valid) with
    the job's `budget_s`, for a ticket; or that `ticket`, for a fresh stamp."""

    stamp: str | None = None
    job_id: str | None = None
    budget_s: float | None = None
    ticket: str | None = None


class StampReply(msgspec.Struct, frozen=True, kw_only=True):
    """The gateway's answer: a `ticket` (kept with the job, never sent to another service), or a
    `stamp` (as the gateway mints for a call, for the asking service and its callees) and when
    it `expires_at` (unix seconds); or why not (`error`)."""

    ticket: str | None = None
    stamp: str | None = None
    expires_at: float | None = None
    error: MeshError | None = None
