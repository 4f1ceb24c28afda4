"""MCP tasks (2025-11-25) over the kit's durable jobs: one job is one task.

Only in sessions negotiated at 2025-11-25 (tasks left the core spec at 2026-07-28, and older
revisions have none): there `initialize` advertises `tasks: {list, cancel, requests: {tools:
{call}}}`, `tools/list` gives job tools (`_meta["mcpmesh/job"]`) `execution.taskSupport:
"optional"`, and a `tools/call` carrying `params.task` starts the job as a plain call does and
is answered with `CreateTaskResult`. Everywhere else `params.task` is ignored (dropped before the
call is forwarded) and `tasks/*` is "method not found"; job tools stay plain tools for everyone.

A task id is `<service>_<job_id>` (`crunch_0193a4c1d2e3f4a5b6c7d8e9f0a1`): any gateway replica
routes it to the owning service with no state of its own. The job record is in the caller's
org's store, so another org's task id is simply not found (tasks are bound to the org: any key of
it with `<service>:read` sees them, `<service>:write` cancels them).

`tasks/get` = the service's `job_status`, `tasks/cancel` = `job_cancel` (after a `job_status`:
a task already finished is refused with -32602, as the spec asks), `tasks/result` = `job_status`
every `MCPMESH_TASK_POLL_S` until the job finished (at most `MCPMESH_MAX_CALL_S`, then a
retryable timeout: ask again), then `job_result`, with `_meta["io.modelcontextprotocol/related-task"]`;
a `tasks/result` carrying a progressToken (and accepting an event stream) is sent the job's
progress (value, total, message) each time a poll finds it grown, then the result.
`tasks/list` merges the `jobs` pages of every service with job tools the key may read, newest
first (job ids sort by creation time); its cursor holds each service's position (opaque).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
from typing import TYPE_CHECKING, Any, Final

import mcp_types as types
import msgspec
from mcp_types import METHOD_NOT_FOUND

from mcpmesh.bus import Deadline
from mcpmesh.gateway.catalog import ToolEntry
from mcpmesh.gateway.errors import GatewayError, invalid_params, not_found_method
from mcpmesh.proto.errors import ErrorCode, MeshError
from mcpmesh.proto.ids import QUALIFIER, InvalidIdentifier, split_qualified_name, validate_service_name
from mcpmesh.proto.jobs import FINISHED, JobList, JobStatus, JobView, is_job_id
from mcpmesh.tenancy.scopes import covers, scope_for

if TYPE_CHECKING:
    from mcpmesh.gateway.router import Call, Router

#: The one protocol revision with tasks in its core.
TASKS_VERSION: Final = "2025-11-25"
RELATED_TASK_META: Final = "io.modelcontextprotocol/related-task"
#: On `tasks/get` and `tasks/cancel` results: what a Task cannot say (progress, attempts, error).
JOB_META: Final = "mcpmesh/job"
METHODS: Final = ("tasks/get", "tasks/result", "tasks/cancel", "tasks/list")
#: Tasks per `tasks/list` page (and per service asked for it).
PAGE: Final = 50

_STATUS: Final = {
    JobStatus.QUEUED: "working",
    JobStatus.RUNNING: "working",
    JobStatus.SUCCEEDED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}


def in_session(call: Call) -> bool:
    """A 2025-11-25 session: the only one offered tasks."""
    return call.legacy and call.protocol_version == TASKS_VERSION


def capability() -> types.ServerTasksCapability:
    return types.ServerTasksCapability(
        list=types.TasksListCapability(),
        cancel=types.TasksCancelCapability(),
        requests=types.ServerTasksRequestsCapability(
            tools=types.TasksToolsCapability(call=types.TasksCallCapability())
        ),
    )


def listed(call: Call, entry: ToolEntry) -> dict[str, Any]:
    """The tool as `tools/list` shows it to this session: job tools are tasks at 2025-11-25."""
    if entry.job and in_session(call):
        return {**entry.raw, "execution": {"taskSupport": "optional"}}
    return entry.raw


def requested(call: Call) -> bool:
    """Whether this `tools/call` asks for a task (and may: a 2025-11-25 session)."""
    task = call.request.params.get("task")
    if task is None or not in_session(call):
        return False
    if not isinstance(task, dict):
        raise invalid_params('tools/call params.task must be an object, e.g. {"ttl": 60000}')
    return True


def without_task(params: dict[str, Any]) -> dict[str, Any]:
    """The call's params as a service gets them: `task` is the gateway's business."""
    return {k: v for k, v in params.items() if k != "task"}


def require_task_support(entry: ToolEntry, shown: str) -> None:
    if not entry.job:
        raise GatewayError.protocol(
            METHOD_NOT_FOUND,
            f"tool {shown!r} does not run as a task (its execution.taskSupport is forbidden): "
            "call it without params.task",
        )


def task_id(service: str, job_id: str) -> str:
    return f"{service}{QUALIFIER}{job_id}"


def _task(service: str, view: JobView, poll_ms: int) -> dict[str, Any]:
    """The job as an MCP Task (wire shape; `ttl` is always present, null when unbounded)."""
    message = view.error.message if view.error is not None else view.message
    task: dict[str, Any] = {
        "taskId": task_id(service, view.job_id),
        "status": _STATUS[view.status],
        "createdAt": _millis(view.created_at),
        "lastUpdatedAt": _millis(view.updated_at),
        "ttl": _ttl_ms(view),
        "pollInterval": poll_ms,
    }
    if message:
        task["statusMessage"] = message
    return task


def _millis(value: str) -> str:
    """An ISO 8601 UTC time to the millisecond, as the store keeps it (a job's start report has
    microseconds, what it stored has not: the task's times must not change between calls)."""
    try:
        at = datetime.datetime.fromisoformat(value)
    except ValueError:
        return value
    return at.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _ttl_ms(view: JobView) -> int | None:
    if view.expires_at is None:
        return None
    try:
        created = datetime.datetime.fromisoformat(view.created_at)
        expires = datetime.datetime.fromisoformat(view.expires_at)
    except ValueError:
        return None
    return max(0, int((expires - created).total_seconds() * 1000))


def _job_meta(view: JobView) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "tool": view.tool,
        "progress": view.progress,
        "total": view.total,
        "attempts": view.attempts,
        "resumable": view.resumable,
    }
    if view.error is not None:
        meta["error"] = msgspec.to_builtins(view.error)
    return meta


def _tool_error(result: dict[str, Any]) -> MeshError | None:
    if result.get("isError") is not True:
        return None
    try:
        return msgspec.convert(result.get("structuredContent"), MeshError)
    except msgspec.ValidationError:
        text = " ".join(c.get("text", "") for c in result.get("content") or [] if isinstance(c, dict))
        return MeshError(code=ErrorCode.INTERNAL, message=text or "the service reported an error")


async def _progress(call: Call, view: JobView, sent: float | None) -> float | None:
    """`notifications/progress` on the request's event stream (it carried a progressToken) when
    the job's progress grew past `sent` (a progress value must only increase); what was sent."""
    if call.on_progress is None or view.progress is None or (sent is not None and view.progress <= sent):
        return sent
    token = call.request.params["_meta"]["progressToken"]  # on_progress is set only with one
    params: dict[str, Any] = {"progressToken": token, "progress": view.progress}
    if view.total is not None:
        params["total"] = view.total
    if view.message:
        params["message"] = view.message
    note = {"jsonrpc": "2.0", "method": "notifications/progress", "params": params}
    await call.on_progress(msgspec.json.encode(note))
    return view.progress


def _not_found(shown: str) -> GatewayError:
    return invalid_params(
        f"task not found: no task {shown!r} (it never existed or has expired); tasks/list shows your tasks"
    )


class Tasks:
    """The `tasks/*` methods and task-augmented `tools/call`, through the router's bus exchanges."""

    def __init__(self, router: Router, *, poll_s: float, max_wait_s: float, page: int = PAGE) -> None:
        self.router = router
        self.page = page
        self.poll_s = poll_s
        self.max_wait_s = max_wait_s
        self.poll_ms = max(1, round(poll_s * 1000))

    async def handle(self, call: Call) -> dict[str, Any]:
        method = call.request.method
        if not in_session(call):
            raise not_found_method(method)
        if method == "tasks/list":
            return await self._list(call)
        service, job_id = await self._target(call)
        if method == "tasks/get":
            view = await self._status(call, service, job_id)
            return {**_task(service, view, self.poll_ms), "_meta": {JOB_META: _job_meta(view)}}
        if method == "tasks/cancel":
            return await self._cancel(call, service, job_id)
        return await self._result(call, service, job_id)

    # -- creating ------------------------------------------------------------------------------

    def created(self, service: str, reply_result: dict[str, Any], shown: str) -> dict[str, Any]:
        """The `CreateTaskResult` for a job tool's answer (its JobView); its refusal as an error."""
        error = _tool_error(reply_result)
        if error is not None:  # no job was started: say why, as a JSON-RPC error
            raise GatewayError(
                error.code, f"{shown}: {error.message}", retryable=error.retryable, extra=error.details
            )
        view = self._view(service, reply_result)
        return {"task": _task(service, view, self.poll_ms)}

    # -- tasks/* ---------------------------------------------------------------------------------

    async def _target(self, call: Call) -> tuple[str, str]:
        """(service, job id) of `params.taskId`, a known service's, on this endpoint."""
        value = call.request.params.get("taskId")
        if not isinstance(value, str) or not value:
            raise invalid_params(
                f"{call.request.method} needs params.taskId, the id tools/call gave the task"
            )
        shown = value if len(value) <= 80 else value[:77] + "..."
        split = split_qualified_name(value)
        if split is None or not is_job_id(split[1]):
            raise _not_found(shown)
        service, job_id = split
        if call.request.service not in (None, service):
            raise _not_found(shown)
        call.service_label = service
        await self.router._require_service(service, unknown=_not_found(shown).message)
        return service, job_id

    async def _job_tool(
        self, call: Call, service: str, tool: str, arguments: dict[str, Any]
    ) -> dict[str, Any]:
        """One of the kit's job tools (`job_status`, ...): its CallToolResult; `not_found` is -32602."""
        result = await self.router.tool_result(call, service, tool, arguments)
        error = _tool_error(result)
        if error is None:
            return result
        job_id = arguments.get("job_id")
        if error.code is ErrorCode.NOT_FOUND and isinstance(job_id, str):
            raise _not_found(task_id(service, job_id))
        raise GatewayError(
            error.code,
            f"service {service!r}: {error.message}",
            retryable=error.retryable,
            extra=error.details,
        )

    @staticmethod
    def _view(service: str, result: dict[str, Any]) -> JobView:
        try:
            return msgspec.convert(result.get("structuredContent"), JobView)
        except msgspec.ValidationError:
            raise GatewayError(
                ErrorCode.INTERNAL, f"service {service!r} sent a malformed job view", status=502
            ) from None

    async def _status(self, call: Call, service: str, job_id: str) -> JobView:
        return self._view(service, await self._job_tool(call, service, "job_status", {"job_id": job_id}))

    async def _cancel(self, call: Call, service: str, job_id: str) -> dict[str, Any]:
        view = await self._status(call, service, job_id)
        if view.status not in FINISHED:
            view = self._view(service, await self._job_tool(call, service, "job_cancel", {"job_id": job_id}))
            if view.status is JobStatus.CANCELLED:
                return {**_task(service, view, self.poll_ms), "_meta": {JOB_META: _job_meta(view)}}
        raise invalid_params(
            f"cannot cancel task {task_id(service, job_id)!r}: already in terminal status "
            f"{_STATUS[view.status]!r}"
        )

    async def _result(self, call: Call, service: str, job_id: str) -> dict[str, Any]:
        """Blocks (polling `job_status`) until the job finished, then its tool's own result; a
        request with a progressToken is sent the job's progress as it grows (`_progress`)."""
        deadline = Deadline.after(self.max_wait_s)
        sent: float | None = None
        while (view := await self._status(call, service, job_id)).status not in FINISHED:
            sent = await _progress(call, view, sent)
            if deadline.remaining() < self.poll_s:
                raise GatewayError(
                    ErrorCode.TIMEOUT,
                    f"task {task_id(service, job_id)!r} is still working after {self.max_wait_s:g} s "
                    "(MCPMESH_MAX_CALL_S): it keeps running; call tasks/result again, or follow it "
                    "with tasks/get",
                    retryable=True,
                )
            await asyncio.sleep(self.poll_s)
        await _progress(call, view, sent)
        result = await self.router.tool_result(call, service, "job_result", {"job_id": job_id})
        if (error := _tool_error(result)) is not None and error.code is ErrorCode.NOT_FOUND:
            raise _not_found(task_id(service, job_id))
        meta = result.get("_meta")
        meta = meta if isinstance(meta, dict) else {}
        return {**result, "_meta": {**meta, RELATED_TASK_META: {"taskId": task_id(service, job_id)}}}

    async def _list(self, call: Call) -> dict[str, Any]:
        """Every service's jobs merged newest first, `page` at a time."""
        positions = _decode_cursor(call.request.params.get("cursor"))
        if positions is None:
            positions = dict.fromkeys(await self._job_services(call), "")
        readable = {s: c for s, c in positions.items() if covers(call.principal.scopes, scope_for(s, "read"))}
        pages = await self.router.gather(
            {s: self._page(call, s, cursor) for s, cursor in readable.items()}, what="tasks/list"
        )
        merged = sorted(
            ((view.job_id, service, view) for service, (page, _more) in pages.items() for view in page),
            key=lambda item: item[0],
            reverse=True,
        )[: self.page]
        taken: dict[str, str] = {}
        for job_id, service, _view in merged:
            taken[service] = job_id  # the oldest taken of each service: where it goes on
        following: dict[str, str] = {}
        for service, (page, more) in pages.items():
            if service in taken and (more or page[-1].job_id != taken[service]):
                following[service] = taken[service]
            elif service not in taken and page:
                following[service] = readable[service]
        result: dict[str, Any] = {"tasks": [_task(s, v, self.poll_ms) for _id, s, v in merged]}
        if following:
            result["nextCursor"] = _encode_cursor(following)
        return result

    async def _job_services(self, call: Call) -> list[str]:
        """Services with job tools this key may read, on this endpoint."""
        single = call.request.service
        names = [single] if single is not None else self.router.discovery.names()
        readable = [s for s in names if covers(call.principal.scopes, scope_for(s, "read"))]
        catalogs = await self.router.gather(
            {s: self.router.catalog.tools(s, call.principal) for s in readable}, what="tasks/list"
        )
        return [s for s, tools in catalogs.items() if tools.has_jobs]

    async def _page(self, call: Call, service: str, cursor: str) -> tuple[list[JobView], bool]:
        arguments: dict[str, Any] = {"limit": self.page}
        if cursor:
            arguments["cursor"] = cursor
        result = await self._job_tool(call, service, "jobs", arguments)
        try:
            listed = msgspec.convert(result.get("structuredContent"), JobList)
        except msgspec.ValidationError:
            raise GatewayError(
                ErrorCode.INTERNAL, f"service {service!r} sent a malformed job list", status=502
            ) from None
        return listed.jobs, listed.next_cursor is not None


def _encode_cursor(positions: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(positions)).decode().rstrip("=")


def _decode_cursor(cursor: Any) -> dict[str, str] | None:
    """Each service's position (the last job id listed, "" from the start); None: no cursor."""
    if cursor is None:
        return None
    bad = invalid_params("invalid cursor: pass the nextCursor of an earlier tasks/list, or none")
    if not isinstance(cursor, str) or len(cursor) > 4096:
        raise bad
    try:
        decoded = msgspec.json.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise bad from None
    if not isinstance(decoded, dict) or not all(
        isinstance(s, str) and _is_service(s) and (c == "" or is_job_id(c)) for s, c in decoded.items()
    ):
        raise bad
    return decoded


def _is_service(value: str) -> bool:
    try:
        validate_service_name(value)
    except InvalidIdentifier:
        return False
    return True
