"""Declaring job tools, and the tools every service with jobs gets: job_status, job_result,
job_cancel and jobs. They read and write the org's records, so they work from any replica."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.utilities.context_injection import find_context_parameter
from mcp.server.mcpserver.utilities.func_metadata import func_metadata
from mcp_types import CallToolResult
from pydantic import Field
from pymongo import ReturnDocument

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.proto.jobs import JobList, JobStatus, is_job_id
from mcpmesh.service.call import call_of
from mcpmesh.service.jobs.context import JobContext
from mcpmesh.service.jobs.records import (
    ACTIVE_VALUES,
    JOBS_INDEXES,
    checked_job_id,
    find_job,
    finished_fields,
    jobs_collection,
    utcnow,
    view_json,
    view_of,
)
from mcpmesh.service.jobs.runner import JobRunner, JobTool
from mcpmesh.telemetry.logs import get_logger

if TYPE_CHECKING:
    from mcpmesh.service.server import Access, MeshService, StartCheck

log = get_logger("mcpmesh.service.jobs")

#: Key of a job tool's `_meta` entry: `{"resumable": bool, "budget_s": float}`.
TOOL_JOB_META = "mcpmesh/job"
#: The tools the kit adds to a service that has job tools.
JOB_ADMIN_TOOLS = ("job_status", "job_result", "job_cancel", "jobs")

_REQUEST_PARAM = "mcpmesh_request"  # the starter's SDK Context parameter
_WITHOUT_BULK = {"args": 0, "result": 0, "checkpoint": 0}  # what status and cancel never read


def register_job_tool(
    service: MeshService,
    fn: Callable[..., Awaitable[Any]],
    *,
    access: Access,
    resumable: bool,
    budget_s: float,
    name: str | None,
    description: str | None,
    tiers: Sequence[str] | None,
    sdk_options: dict[str, Any],
    idempotency_key: str | None = None,
    start_check: StartCheck | None = None,
) -> None:
    """Register `fn` as a job tool: the SDK tool checks the start (`start_check`), records the
    job, starts it here and returns its view."""
    runner = runner_of(service)
    tool_name = name or fn.__name__
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(f"job tool {tool_name!r}: the handler must be an `async def`")
    if tool_name in JOB_ADMIN_TOOLS:
        raise ValueError(f"job tool {tool_name!r}: the name is taken by the kit's job tools")
    if budget_s <= 0:
        raise ValueError(f"job tool {tool_name!r}: budget_s must be positive")
    if find_context_parameter(fn) is not None:
        raise TypeError(
            f"job tool {tool_name!r}: a job outlives its request, so its handler takes a JobContext, "
            "not the request's Context"
        )
    job_param = _job_parameter(fn, tool_name)
    if idempotency_key is not None and (
        idempotency_key == job_param or idempotency_key not in inspect.signature(fn).parameters
    ):
        raise ValueError(
            f"job tool {tool_name!r}: idempotency_key {idempotency_key!r} is not one of its arguments"
        )
    structured = sdk_options.pop("structured_output", None)
    runner.tools[tool_name] = JobTool(
        name=tool_name,
        fn=fn,
        job_param=job_param,
        meta=func_metadata(fn, skip_names=[job_param], structured_output=structured),
        resumable=resumable,
        budget_s=budget_s,
        idempotency_key=idempotency_key,
    )
    meta = {
        **(sdk_options.pop("meta", None) or {}),
        TOOL_JOB_META: {"resumable": resumable, "budget_s": budget_s},
    }
    about = description or inspect.getdoc(fn) or ""
    note = (
        f"Runs as a durable job: answers at once with a job_id; follow it with {service.name}_job_status, "
        f"fetch the outcome with {service.name}_job_result, stop it with {service.name}_job_cancel."
    )
    service.tool(
        access=access,
        name=tool_name,
        description=f"{about}\n\n{note}".strip(),
        tiers=tiers,
        meta=meta,
        # Each call starts another job: never re-sent as if repeating it were harmless, unless
        # it carries the idempotency key (a repeat then answers with the job the first started).
        read_only=False,
        idempotent=False,
        idempotency_key=idempotency_key,
        **sdk_options,
    )(_starter(fn, job_param, tool_name, runner, start_check))


def runner_of(service: MeshService) -> JobRunner:
    """The service's job runner, created with its store kind, admin tools and start hook on first use."""
    if service.jobs is not None:
        return service.jobs
    runner = JobRunner(service)
    if runner.kind in service.store_kinds:
        raise ValueError(f"store kind {runner.kind!r} is reserved for the kit's job records")
    if service._store is not None:
        raise RuntimeError("declare job tools before the service starts (its store is already open)")
    service.store_kinds[runner.kind] = JOBS_INDEXES
    service.jobs = runner
    service.on_start(runner.start)
    _register_admin_tools(service, runner)
    return runner


def _job_parameter(fn: Callable[..., Any], tool_name: str) -> str:
    for param, annotation in typing.get_type_hints(fn).items():
        if inspect.isclass(annotation) and issubclass(annotation, JobContext):
            return param
    raise TypeError(f"job tool {tool_name!r}: the handler needs a parameter annotated `JobContext`")


def _starter(
    fn: Callable[..., Awaitable[Any]],
    job_param: str,
    tool_name: str,
    runner: JobRunner,
    start_check: StartCheck | None,
) -> Callable[..., Awaitable[dict[str, Any]]]:
    """The SDK-facing tool: the handler's arguments (same schema), plus the request's Context."""
    signature = inspect.signature(fn, eval_str=True)
    params = [p for p in signature.parameters.values() if p.name != job_param]
    if any(p.name == _REQUEST_PARAM for p in params):
        raise TypeError(f"job tool {tool_name!r}: the parameter name {_REQUEST_PARAM!r} is reserved")
    request = inspect.Parameter(_REQUEST_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=Context)

    async def start(**arguments: Any) -> dict[str, Any]:
        call = call_of(arguments.pop(_REQUEST_PARAM))
        if start_check is not None:
            await start_check(call, arguments)
        return await runner.submit(call, tool_name, arguments)

    start.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*params, request], return_annotation=dict[str, Any]
    )
    start.__annotations__ = {
        **{p.name: p.annotation for p in params},
        _REQUEST_PARAM: Context,
        "return": dict[str, Any],
    }
    start.__name__ = start.__qualname__ = tool_name
    start.__doc__ = fn.__doc__
    return start


def _register_admin_tools(service: MeshService, runner: JobRunner) -> None:
    kind = runner.kind

    @service.tool(access="read", name="job_status", open_world=False)
    async def job_status(job_id: str, ctx: Context) -> dict[str, Any]:
        """Where a job of this service stands: status, progress, partial result, error, times."""
        return view_json(await find_job(call_of(ctx).store, kind, job_id, projection=_WITHOUT_BULK))

    @service.tool(access="read", name="job_result", open_world=False, structured_output=False)
    async def job_result(job_id: str, ctx: Context) -> CallToolResult:
        """The result of a job that succeeded, exactly as its tool returns it; an error saying why
        when it failed, was cancelled or is still running."""
        doc = await find_job(call_of(ctx).store, kind, job_id, projection={"checkpoint": 0, "args": 0})
        view = view_of(doc, with_partial=False)
        if view.status is JobStatus.SUCCEEDED:
            return CallToolResult.model_validate(doc["result"])
        if view.error is not None:
            raise MeshException(
                view.error.code,
                f"job {job_id} failed: {view.error.message}",
                retryable=view.error.retryable,
                details=view.error.details,
            )
        if view.status is JobStatus.CANCELLED:
            raise MeshException(
                ErrorCode.CONFLICT, f"job {job_id} has no result: {view.message or 'cancelled'}"
            )
        done = f", progress {view.progress:g}" if view.progress is not None else ""
        of = f" of {view.total:g}" if view.total is not None and done else ""
        raise MeshException(
            ErrorCode.CONFLICT,
            f"job {job_id} is still {view.status.value}{done}{of}: follow it with job_status, "
            "then ask for its result again",
        )

    @service.tool(access="write", name="job_cancel", destructive=True, idempotent=True, open_world=False)
    async def job_cancel(job_id: str, ctx: Context) -> dict[str, Any]:
        """Cancel a queued or running job of this service: it is marked cancelled at once and its
        work stops within about a second. A finished job is returned as it is."""
        call = call_of(ctx)
        collection = await jobs_collection(call.store, kind)
        fields = {
            **finished_fields(JobStatus.CANCELLED, utcnow(), runner.retention),
            "message": f"cancelled by {call.stamp.sub}",
        }
        doc = await collection.find_one_and_update(
            {"_id": checked_job_id(job_id), "status": {"$in": ACTIVE_VALUES}},
            {"$set": fields},
            projection=_WITHOUT_BULK,
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            return view_json(await find_job(call.store, kind, job_id, projection=_WITHOUT_BULK))
        log.info("job cancelled", job_id=job_id)
        return view_json(doc)

    @service.tool(access="read", name="jobs", open_world=False)
    async def jobs(
        ctx: Context,
        status: JobStatus | None = None,
        limit: Annotated[int, Field(ge=1, le=100)] = 20,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """This organization's jobs of this service, newest first, optionally only those with one
        status; pass `next_cursor` back as `cursor` for older ones. Partial results are left out."""
        query: dict[str, Any] = {}
        if status is not None:
            query["status"] = status.value
        if cursor is not None:
            if not is_job_id(cursor):
                raise MeshException(
                    ErrorCode.INVALID_REQUEST, "cursor must be the next_cursor an earlier jobs call returned"
                )
            query["_id"] = {"$lt": cursor}
        collection = await jobs_collection(call_of(ctx).store, kind)
        found = collection.find(query, {**_WITHOUT_BULK, "partial": 0}).sort("_id", -1)
        docs = await found.limit(limit + 1).to_list(limit + 1)
        page = [view_of(doc, with_partial=False) for doc in docs[:limit]]
        more = len(docs) > limit
        listed = JobList(jobs=page, next_cursor=page[-1].job_id if more else None)
        built: dict[str, Any] = msgspec.to_builtins(listed)
        return built
