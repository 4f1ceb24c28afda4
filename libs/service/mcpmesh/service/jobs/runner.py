"""Running durable jobs on one replica: start, lease heartbeat, cancel, sweep, release.

Ownership is a lease: the owning replica's id and a per-run lease id in the record, renewed
by one heartbeat per org every `heartbeat_s`. Every write a run makes is conditional on its
lease and an active status, so a cancelled or taken-over run can write nothing. The same
heartbeat reads the records back: a run whose record was cancelled, taken over or deleted is
stopped (its task cancelled) within one heartbeat. Every replica's sweeper fails, or for a
resumable tool claims and resumes, jobs whose heartbeat is older than `lease_s`.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
import pydantic
import pydantic_core
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from mcpmesh.bus import cancel_until_done
from mcpmesh.proto.errors import ErrorCode, MeshError, MeshException
from mcpmesh.proto.jobs import JobStatus
from mcpmesh.service.call import CURRENT_CALL, Call
from mcpmesh.service.jobs.context import JobContext, StopReason
from mcpmesh.service.jobs.records import (
    ACTIVE_VALUES,
    RELEASED_AT,
    finished_fields,
    idempotency_digest,
    jobs_collection,
    jobs_kind,
    json_size,
    mesh_error,
    new_job_id,
    utcnow,
    view_json,
)
from mcpmesh.service.jobs.tickets import JobStamps
from mcpmesh.service.settings import JobSettings
from mcpmesh.store import Collection, TenantStore
from mcpmesh.telemetry.logs import bind_request, get_logger
from mcpmesh.telemetry.tracing import tracer

if TYPE_CHECKING:
    from mcpmesh.service.server import MeshService

log = get_logger("mcpmesh.service.jobs")

#: How long a released (SIGTERM) or abandoned run may take to unwind after its cancellation.
_UNWIND_S = 5.0
#: Stale jobs one sweep handles per org (the next sweep takes the rest).
_SWEEP_BATCH = 100


@dataclass(frozen=True)
class JobTool:
    """A tool declared with `@service.job_tool`: its handler and how it runs."""

    name: str
    fn: Callable[..., Awaitable[Any]]
    job_param: str  # the handler's parameter that receives the JobContext
    meta: FuncMetadata  # the handler's argument model and result conversion (the SDK's own)
    resumable: bool
    budget_s: float
    idempotency_key: str | None = None  # the argument a start deduplicates on


class _OverBudget(Exception):
    pass


class JobRunner:
    """The job tools of one service and the jobs running on this replica."""

    def __init__(self, service: MeshService) -> None:
        self.service = service
        self.kind = jobs_kind(service.name)
        self.tools: dict[str, JobTool] = {}
        self.replica = ""
        self.local: dict[str, JobContext] = {}  # job id -> run on this replica
        self.stamps = JobStamps(service)  # for jobs calling other services
        self._slots = asyncio.Semaphore(1)
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._sweep_task: asyncio.Task[None] | None = None
        self._stopping = True  # until started

    @property
    def settings(self) -> JobSettings:
        return self.service.settings.jobs

    @property
    def retention(self) -> timedelta:
        return timedelta(hours=self.settings.retention_h)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, _service: MeshService | None = None) -> None:
        """Begin heartbeats and sweeps (the service's start hook)."""
        self.replica = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._slots = asyncio.Semaphore(self.settings.max_running)
        self._stopping = False
        loop = asyncio.get_running_loop()
        self._heartbeat_task = loop.create_task(self._every(self.settings.heartbeat_s, self._heartbeat))
        self._sweep_task = loop.create_task(self._every(self.settings.sweep_s, self.sweep, jitter=True))

    async def stop(self, grace_s: float) -> None:
        """SIGTERM: start and take over nothing more; running jobs get `grace_s` to finish, then
        the rest are released (lease cleared) for the sweepers to fail or resume."""
        self._stopping = True
        await self._stop_upkeep(self._sweep_task)
        runs = [job._task for job in self.local.values() if job._task is not None]
        if runs:
            await asyncio.wait(runs, timeout=grace_s)
        left = list(self.local.values())
        for job in left:
            self._stop_run(job, "release")
        await self._unwind(left)
        await self._stop_upkeep(self._heartbeat_task)
        if runs or left:
            log.info("jobs stopped", finished=len(runs) - len(left), released=len(left))

    async def abandon(self) -> None:
        """Stop as a crashed replica would: no write of any kind; leases simply run out."""
        self._stopping = True
        await self._stop_upkeep(self._sweep_task, self._heartbeat_task)
        left = list(self.local.values())
        for job in left:
            self._stop_run(job, "abandon")
        await self._unwind(left)

    @staticmethod
    async def _stop_upkeep(*loops: asyncio.Task[None] | None) -> None:
        """Heartbeat and sweep loops end before the stop goes on (`cancel_until_done`: cancelled
        once, a loop could lose the cancel and run on, renewing or taking over after the stop)."""
        await cancel_until_done(loops, what="job upkeep")

    async def _unwind(self, jobs: list[JobContext]) -> None:
        tasks = [job._task for job in jobs if job._task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=_UNWIND_S)

    async def _every(
        self, interval_s: float, action: Callable[[], Awaitable[None]], jitter: bool = False
    ) -> None:
        while True:
            await asyncio.sleep(interval_s * (random.uniform(0.8, 1.2) if jitter else 1.0))
            try:
                await action()
            except Exception as exc:  # the store may be briefly unreachable: try again next round
                log.warning("job upkeep failed", action=action.__name__, error=repr(exc))

    # -- starting and running ------------------------------------------------------------------

    async def submit(self, call: Call, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Record a new job for the caller's org and start it here; returns its view at once."""
        if self._stopping:
            raise MeshException(ErrorCode.UNAVAILABLE, "this replica is shutting down: call the tool again")
        spec = self.tools[tool]
        now = utcnow()
        deadline = now + timedelta(seconds=spec.budget_s)
        doc: dict[str, Any] = {
            "_id": new_job_id(),
            "tool": tool,
            "args": pydantic_core.to_jsonable_python(arguments, by_alias=True),
            "status": JobStatus.QUEUED.value,
            "progress": None,
            "total": None,
            "message": None,
            "partial": None,
            "result": None,
            "error": None,
            "checkpoint": None,
            "resumable": spec.resumable,
            "attempts": 1,
            "started_by": call.stamp.sub,
            "tier": call.tier,
            "owner": self.replica,
            "lease": secrets.token_hex(8),
            "heartbeat_at": now,
            "deadline_at": deadline,
            "created_at": now,
            "updated_at": now,
            "finished_at": None,
            "expires_at": deadline + self.retention,  # until it finishes: never kept forever
        }
        key = spec.idempotency_key
        if key is not None and arguments.get(key) not in (None, ""):
            doc["idempotency"] = idempotency_digest(tool, doc["args"][key])
        ticket = await self.stamps.ticket(call, doc["_id"], spec.budget_s)
        if ticket is not None:  # a credential: never in a view, an export or a log
            doc["ticket"] = ticket
        tenant = call.store
        collection = await jobs_collection(tenant, self.kind)
        try:
            await collection.insert_one(doc)  # with a key, the insert is the claim
        except DuplicateKeyError:
            return await self._started_before(collection, doc, spec)
        self._launch(JobContext(self, tenant, collection, doc))
        log.info("job started", job_id=doc["_id"])
        return view_json(doc)

    async def _started_before(
        self, collection: Collection, doc: dict[str, Any], spec: JobTool
    ) -> dict[str, Any]:
        """The view of the job an earlier start with the same idempotency key recorded."""
        if "idempotency" not in doc:
            raise MeshException(ErrorCode.UNAVAILABLE, "the job could not be recorded: call the tool again")
        earlier = await collection.find_one({"idempotency": doc["idempotency"]})
        if earlier is None:  # it expired in between: the caller may simply start again
            raise MeshException(
                ErrorCode.CONFLICT,
                "the job started with this key just expired: call the tool again",
                retryable=True,
            )
        if earlier["args"] != doc["args"]:
            raise MeshException(
                ErrorCode.CONFLICT,
                f"this {spec.idempotency_key} already started job {earlier['_id']} with other arguments: "
                f"use a new {spec.idempotency_key} for other work",
            )
        log.info("job start repeated: the earlier job answers", job_id=earlier["_id"])
        return view_json(earlier)

    def _launch(self, job: JobContext) -> None:
        context = contextvars.copy_context()
        context.run(CURRENT_CALL.set, None)  # the job outlives the request that started it
        job._task = asyncio.get_running_loop().create_task(self._run(job), context=context)
        self.local[job.id] = job

    async def _run(self, job: JobContext) -> None:
        spec = self.tools[job.tool]
        try:
            with (
                bind_request(org_id=job.org_id, service=self.service.name, tool=job.tool, job_id=job.id),
                tracer().start_as_current_span(
                    f"{self.service.name} job",
                    attributes={"mcpmesh.org_id": job.org_id, "mcpmesh.job_id": job.id, "mcp.tool": job.tool},
                ),
            ):
                await self._work(job, spec)
        finally:
            self.local.pop(job.id, None)

    async def _work(self, job: JobContext, spec: JobTool) -> None:
        qualified = self.service.qualified(job.tool)
        try:
            async with self._slots:
                if self._stopping:  # still queued at shutdown: leave it to another replica
                    self._stop_run(job, "release")
                    await asyncio.sleep(0)
                await self.record(job, {"status": JobStatus.RUNNING.value})
                kwargs = spec.meta.validate_arguments(job._args)
                budget = asyncio.timeout((job._deadline_at - utcnow()).total_seconds())
                try:
                    async with budget:
                        value = await spec.fn(**kwargs, **{spec.job_param: job})
                except TimeoutError:
                    if budget.expired():
                        raise _OverBudget from None
                    raise
            result = spec.meta.convert_result(value).model_dump(mode="json", by_alias=True, exclude_none=True)
            size, limit = json_size(result), self.settings.value_max_bytes
            if size > limit:
                raise MeshException(
                    ErrorCode.LIMIT_EXCEEDED,
                    f"the result is {size} bytes, over the {limit} a job keeps: return a reference "
                    "to the data (e.g. the id of a record you stored) instead",
                )
            await self._finish(job, JobStatus.SUCCEEDED, {"result": result})
            log.info("job succeeded")
        except asyncio.CancelledError:
            if job._stop == "release":
                await self._release(job)
            elif job._stop is None:
                raise  # not the runner's doing (the loop is closing): the lease runs out, a sweeper acts
        except _OverBudget:
            error = mesh_error(ErrorCode.TIMEOUT, f"the job ran past its time budget of {spec.budget_s:g} s")
            await self._finish(job, JobStatus.FAILED, {"error": msgspec.to_builtins(error)})
        except MeshException as exc:
            await self._finish(job, JobStatus.FAILED, {"error": msgspec.to_builtins(exc.error)})
        except pydantic.ValidationError:
            error = mesh_error(
                ErrorCode.INVALID_REQUEST,
                f"the job's arguments no longer fit {qualified} (the service changed): start it again",
            )
            await self._finish(job, JobStatus.FAILED, {"error": msgspec.to_builtins(error)})
        except Exception:
            log.exception("job failed", tool=qualified)
            error = mesh_error(ErrorCode.INTERNAL, f"internal error in {qualified}: the failure was logged")
            await self._finish(job, JobStatus.FAILED, {"error": msgspec.to_builtins(error)})

    # -- writing a run's record ------------------------------------------------------------------

    async def write(self, job: JobContext, fields: dict[str, Any]) -> bool:
        """Update the record while this run still owns it (its lease, an active status)."""
        if job._stop == "abandon":
            return False
        result = await job._collection.update_one(
            {"_id": job.id, "lease": job._lease, "status": {"$in": ACTIVE_VALUES}},
            {"$set": {"updated_at": utcnow(), **fields}},
        )
        return result.matched_count == 1

    async def record(self, job: JobContext, fields: dict[str, Any]) -> None:
        """Write for the running handler; a run that lost its record stops here (CancelledError)."""
        if not await self.write(job, fields):
            self._stop_run(job, "store")
            await asyncio.sleep(0)  # delivers the cancellation to this very task

    async def _finish(self, job: JobContext, status: JobStatus, fields: dict[str, Any]) -> None:
        try:
            await self.write(job, {**finished_fields(status, utcnow(), self.retention), **fields})
        except Exception as exc:
            log.warning("job outcome not recorded: a sweeper takes the job over", error=repr(exc))

    async def _release(self, job: JobContext) -> None:
        try:
            await self.write(job, {"owner": None, "lease": None, "heartbeat_at": RELEASED_AT})
        except Exception as exc:
            log.warning("job not released: a sweeper takes it over when its lease runs out", error=repr(exc))

    def _stop_run(self, job: JobContext, reason: StopReason) -> None:
        if job._stop is None or reason == "abandon":
            job._stop = reason
        if job._task is not None and not job._task.done():
            job._task.cancel()

    # -- heartbeat: renew leases, notice cancels and take-overs ----------------------------------

    async def _heartbeat(self) -> None:
        by_org: dict[str, list[JobContext]] = {}
        for job in list(self.local.values()):
            if job._stop is None:
                by_org.setdefault(job.org_id, []).append(job)
        await asyncio.gather(*(self._renew(jobs) for jobs in by_org.values()))

    async def _renew(self, jobs: list[JobContext]) -> None:
        """Two round trips per org, however many of its jobs run here."""
        started = time.monotonic()
        collection = jobs[0]._collection
        ids = [job.id for job in jobs]
        try:
            await collection.update_many(
                {"_id": {"$in": ids}, "owner": self.replica, "status": {"$in": ACTIVE_VALUES}},
                {"$set": {"heartbeat_at": utcnow()}},
            )
            current = {
                doc["_id"]: doc
                async for doc in collection.find({"_id": {"$in": ids}}, {"lease": 1, "status": 1})
            }
        except Exception as exc:
            log.warning("job leases not renewed", org_id=jobs[0].org_id, error=repr(exc))
            # Stop before any other replica may take the job over: never run it twice at once.
            limit = self.settings.lease_s - 2 * self.settings.heartbeat_s
            for job in jobs:
                if started - job._renewed > limit:
                    log.warning("job lease lost: stopped here", job_id=job.id)
                    self._stop_run(job, "store")
            return
        for job in jobs:
            doc = current.get(job.id)
            if doc is not None and doc.get("lease") == job._lease and doc.get("status") in ACTIVE_VALUES:
                job._renewed = started
                continue
            cancelled = doc is not None and doc.get("status") == JobStatus.CANCELLED.value
            log.info(
                "job stopped here",
                job_id=job.id,
                reason="cancelled" if cancelled else "taken over or deleted",
            )
            self._stop_run(job, "store")

    # -- sweeper: jobs whose replica stopped -----------------------------------------------------

    async def sweep(self) -> None:
        """Fail, or resume here (resumable tools), every job whose lease ran out, in every org."""
        cutoff = utcnow() - timedelta(seconds=self.settings.lease_s)
        async for tenant in self.service.tenants(self.kind):
            if self._stopping:
                return
            collection = await jobs_collection(tenant, self.kind)
            stale = collection.find({"status": {"$in": ACTIVE_VALUES}, "heartbeat_at": {"$lt": cutoff}})
            for doc in await stale.limit(_SWEEP_BATCH).to_list(_SWEEP_BATCH):
                if doc["_id"] not in self.local and not self._stopping:
                    await self._take_over(tenant, collection, doc, cutoff)

    async def _take_over(
        self, tenant: TenantStore, collection: Collection, doc: dict[str, Any], cutoff: datetime
    ) -> None:
        # Conditional on what was read: if the owner renewed meanwhile, or another sweeper got
        # here first, nothing matches and this replica leaves the job alone.
        owned = {
            "_id": doc["_id"],
            "lease": doc.get("lease"),
            "status": {"$in": ACTIVE_VALUES},
            "heartbeat_at": {"$lt": cutoff},
        }
        now = utcnow()
        with bind_request(org_id=tenant.org_id, job_id=doc["_id"], tool=doc["tool"]):
            error = self._why_not_resume(doc, now)
            if error is not None:
                fields = {
                    **finished_fields(JobStatus.FAILED, now, self.retention),
                    "error": msgspec.to_builtins(error),
                }
                if (await collection.update_one(owned, {"$set": fields})).modified_count:
                    log.warning("job failed: the replica running it stopped", reason=error.message)
                return
            lease = secrets.token_hex(8)
            claimed = await collection.find_one_and_update(
                owned,
                {
                    "$set": {
                        "owner": self.replica,
                        "lease": lease,
                        "heartbeat_at": now,
                        "status": JobStatus.QUEUED.value,
                        "updated_at": now,
                    },
                    "$inc": {"attempts": 1},
                },
                return_document=ReturnDocument.AFTER,
            )
            if claimed is None or claimed.get("lease") != lease:
                return
            log.info("job resumed from its checkpoint", attempt=claimed.get("attempts"))
            self._launch(JobContext(self, tenant, collection, claimed))

    def _why_not_resume(self, doc: dict[str, Any], now: datetime) -> MeshError | None:
        again = "start it again"
        if doc["tool"] not in self.tools:
            return mesh_error(
                ErrorCode.UNAVAILABLE,
                f"the replica running this job stopped and this service no longer has {doc['tool']}",
            )
        if not doc.get("resumable"):
            return mesh_error(
                ErrorCode.UNAVAILABLE, f"the replica running this job stopped before it finished: {again}"
            )
        attempts = int(doc.get("attempts", 1))
        if attempts >= self.settings.max_attempts:
            return mesh_error(
                ErrorCode.UNAVAILABLE,
                f"the job was interrupted {attempts} times (its replica stopped): {again}",
            )
        if doc["deadline_at"] <= now:
            return mesh_error(
                ErrorCode.TIMEOUT, f"the replica running this job stopped after its time budget: {again}"
            )
        return None
