"""One MCP request, routed: answered by the gateway, forwarded to one service, or fanned out.

`/mcp` is every service as one MCP server. Names carry the service as a prefix:
tools and prompts are `<service>_<name>` (`context_create`, `proto.ids.qualified_tool_name`;
split at the first `_`, service names have none); resources keep the URI their
service gives them and are routed by URI scheme (`context://...` goes to `context`).
`/mcp/<service>` is that service alone, with its own names.

Answered here: `initialize` (legacy), `server/discover` on `/mcp`, `ping`, `logging/setLevel`
(accepted, no effect: services do not stream log messages), `tools/list` (from the catalog,
filtered by scope and tier), and in 2025-11-25 sessions task-augmented `tools/call` and
`tasks/*` (tasks.py: jobs as MCP tasks). Refused: `resources/subscribe`/`unsubscribe` and
`subscriptions/listen` (no server-to-client push over the stateless bus). Everything else
goes to the service over NATS as one stateless 2026-07-28 exchange carrying the tenant stamp,
the request id and the trace context, bounded by its deadline: for a tool call,
min(the tool's budget from its `_meta["mcpmesh/budget_s"]`, `MCPMESH_MAX_CALL_S`); for anything
else, min(`MCPMESH_CALL_TIMEOUT_S`, `MCPMESH_MAX_CALL_S`). Its progress notifications are
relayed to `Call.on_progress`, its result reassembled when it came in parts.

A request is sent once. It is sent again (to another replica) only when it provably reached
none: no responders, or the connection could not take it. A request that was sent and not
answered in time is a 504 saying whether a retry is safe (read-only, idempotent, or resent
with the tool's idempotency key) or the call may have been applied. A known service with no
replica answering health checks is a 503 with `Retry-After`, never "unknown".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import mcp_types as types
import msgspec
from mcp.shared.inbound import MCP_PARAM_HEADER_PREFIX, validate_mcp_param_headers
from mcp_types import SERVER_INFO_META_KEY
from mcp_types import methods as spec_methods
from mcp_types.jsonrpc import INTERNAL_ERROR
from mcp_types.version import (
    HANDSHAKE_PROTOCOL_VERSIONS,
    LATEST_HANDSHAKE_VERSION,
    LATEST_MODERN_VERSION,
    MODERN_PROTOCOL_VERSIONS,
)
from pydantic import ValidationError

from mcpmesh.bus import NO_RESPONDERS, Bus, Deadline, NotDelivered
from mcpmesh.bus.frames import OnProgress
from mcpmesh.bus.mcp import DEFAULT_MAX_RESULT_BYTES, exception_from_error, exchange, request_body
from mcpmesh.gateway import tasks
from mcpmesh.gateway.catalog import Catalog, ToolEntry, can_list
from mcpmesh.gateway.control.principal import Principal
from mcpmesh.gateway.discovery import Discovery, NoHealthyReplica
from mcpmesh.gateway.errors import (
    HTTP_STATUS,
    GatewayError,
    Repeat,
    invalid_params,
    mesh_code_of,
    not_found_method,
    timed_out,
)
from mcpmesh.gateway.stamps import StampCache
from mcpmesh.gateway.wire import McpRequest, modern_envelope
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.proto.ids import (
    TOOL_NAME_PATTERN,
    InvalidIdentifier,
    qualified_tool_name,
    split_qualified_name,
    validate_service_name,
)
from mcpmesh.telemetry.logs import get_logger
from mcpmesh.tenancy.scopes import covers, scope_for

log = get_logger("mcpmesh.gateway.router")

SERVER_NAME: Final = "mcpmesh"
SERVER_VERSION: Final = "0.1.0"
INSTRUCTIONS: Final = (
    "mcpmesh: every service of the mesh as one MCP server. Tools and prompts are named "
    "'<service>_<name>' (e.g. 'context_create'); resource URIs start with their service "
    "('context://...'). /mcp/<service> serves one service with its own names."
)
_MAX_PAGES: Final = 20
_PARAM_PREFIX: Final = MCP_PARAM_HEADER_PREFIX.lower()
_UNSUPPORTED: Final = {
    "resources/subscribe": "resource subscriptions are not supported by the gateway",
    "resources/unsubscribe": "resource subscriptions are not supported by the gateway",
    "subscriptions/listen": "server-to-client subscriptions are not supported by the gateway",
}
_LIST_KEYS: Final = {
    "prompts/list": "prompts",
    "resources/list": "resources",
    "resources/templates/list": "resourceTemplates",
}


@dataclass
class Call:
    """One request on its way through the gateway."""

    request: McpRequest
    principal: Principal
    request_id: str
    protocol_version: str  # what the client speaks (modern envelope, or the session's negotiated one)
    client_info: Any
    client_capabilities: Any
    body: bytes  # the client's raw body (forwarded untouched where nothing needs rewriting)
    service_label: str = "gateway"
    tool_label: str = ""
    upstream_s: float = 0.0  # time spent waiting on services (for the request log line)
    on_progress: OnProgress | None = None  # relays the service's progress notifications (SSE)
    client_request: str | None = None  # how the client names it when it cancels (wire.client_request)

    @property
    def legacy(self) -> bool:
        return self.request.era == "legacy"


@dataclass
class Reply:
    body: bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    outcome: str = "ok"  # "ok", "tool_error", or an ErrorCode value


class _ErrorHead(msgspec.Struct):
    code: int = INTERNAL_ERROR
    message: str = ""
    data: Any = None


class _ResultHead(msgspec.Struct):
    isError: bool = False


class _ReplyHead(msgspec.Struct):
    result: _ResultHead | None = None
    error: _ErrorHead | None = None


_T = TypeVar("_T")

#: Reads: a timed-out one is safe to retry.
_READ: Final = Repeat("the request", safe=True)


def _capabilities(version: str | None = None) -> types.ServerCapabilities:
    return types.ServerCapabilities(
        tools=types.ToolsCapability(list_changed=False),
        resources=types.ResourcesCapability(subscribe=False, list_changed=False),
        prompts=types.PromptsCapability(list_changed=False),
        completions=types.CompletionsCapability(),
        logging=types.LoggingCapability(),
        tasks=tasks.capability() if version == tasks.TASKS_VERSION else None,
    )


def _dump(model: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = model.model_dump(by_alias=True, mode="json", exclude_none=True)
    return dumped


def negotiate(requested: Any) -> str:
    return requested if requested in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION


class Router:
    def __init__(
        self,
        *,
        bus: Bus,
        discovery: Discovery,
        stamps: StampCache,
        call_timeout_s: float,
        catalog_ttl_s: float,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        max_call_s: float = 900.0,
        task_poll_s: float = 1.0,
    ) -> None:
        self.bus = bus
        self.discovery = discovery
        self.stamps = stamps
        self.call_timeout_s = call_timeout_s
        self.max_result_bytes = max_result_bytes
        self.max_call_s = max_call_s
        self.catalog = Catalog(self._fetch_tools, ttl_s=catalog_ttl_s)
        self.tasks = tasks.Tasks(self, poll_s=task_poll_s, max_wait_s=max_call_s)
        self._server_info = {"name": SERVER_NAME, "version": SERVER_VERSION}
        self._handlers: dict[str, Callable[[Call], Awaitable[Reply]]] = {
            "ping": self._ping,
            "logging/setLevel": self._ping,
            "tools/list": self._tools_list,
            "tools/call": self._tools_call,
            "prompts/get": self._prompts_get,
            "resources/read": self._resources_read,
            "completion/complete": self._complete,
            **dict.fromkeys(tasks.METHODS, self._tasks),
        }

    # -- entry ----------------------------------------------------------------------------------

    async def dispatch(self, call: Call) -> Reply:
        method = call.request.method
        call.tool_label = method
        if method == "initialize":
            if not call.legacy:
                raise not_found_method(method)
            return await self._initialize(call)
        if method == "server/discover":
            if call.legacy:
                raise not_found_method(method)
            if call.request.service is None:
                return self._result(call, self._discover_result())
        if method in _UNSUPPORTED:
            raise GatewayError.protocol(-32601, _UNSUPPORTED[method])
        handler = self._handlers.get(method)
        if handler is not None:
            return await handler(call)
        service = call.request.service
        if service is None:
            if method in _LIST_KEYS:
                return await self._fan_out_list(call, method)
            raise not_found_method(method)
        await self._require_service(service)
        self._require_some_scope(call.principal, service)
        call.service_label = service
        repeat = Repeat(f"{method!r}", safe=method.endswith("/list"))
        return await self._forward(call, service, self._rewritten(call), repeat=repeat)

    # -- answered here ---------------------------------------------------------------------------

    async def _ping(self, call: Call) -> Reply:
        return self._result(call, {})

    def _discover_result(self) -> dict[str, Any]:
        result = types.DiscoverResult(
            supported_versions=list(MODERN_PROTOCOL_VERSIONS),
            capabilities=_capabilities(),
            instructions=INSTRUCTIONS,
            ttl_ms=0,
            cache_scope="public",
        )
        return _dump(result)

    async def _initialize(self, call: Call) -> Reply:
        negotiated = negotiate(call.request.params.get("protocolVersion"))
        service = call.request.service
        if service is None:
            result = types.InitializeResult(
                protocol_version=negotiated,
                capabilities=_capabilities(negotiated),
                server_info=types.Implementation(name=SERVER_NAME, version=SERVER_VERSION),
                instructions=INSTRUCTIONS,
            )
            return Reply(self._encode(call.request.rpc_id, _dump(result)))
        # One service alone: its own capabilities and identity, from its server/discover.
        await self._require_service(service)
        self._require_some_scope(call.principal, service)
        call.service_label = service
        raw = await self._exchange(
            call.principal,
            service,
            request_body("server/discover", None, request_id=call.request_id[:12]),
            request_id=call.request_id,
            repeat=_READ,
        )
        discovered = self._result_or_raise(raw, service)
        info = (discovered.get("_meta") or {}).get(SERVER_INFO_META_KEY) or {
            "name": f"{SERVER_NAME}-{service}",
            "version": SERVER_VERSION,
        }
        capabilities = discovered.get("capabilities") or {}
        if negotiated == tasks.TASKS_VERSION:
            capabilities = {**capabilities, "tasks": _dump(tasks.capability())}
        result_dict: dict[str, Any] = {
            "protocolVersion": negotiated,
            "capabilities": capabilities,
            "serverInfo": info,
        }
        if discovered.get("instructions"):
            result_dict["instructions"] = discovered["instructions"]
        try:
            shaped = spec_methods.serialize_server_result("initialize", negotiated, result_dict)
        except ValidationError:
            shaped = _dump(
                types.InitializeResult(
                    protocol_version=negotiated,
                    capabilities=_capabilities(),
                    server_info=types.Implementation(name=f"{SERVER_NAME}-{service}", version=SERVER_VERSION),
                )
            )
        return Reply(self._encode(call.request.rpc_id, shaped))

    # -- tools -----------------------------------------------------------------------------------

    async def _tools_list(self, call: Call) -> Reply:
        principal = call.principal
        single = call.request.service
        if single is not None:
            await self._require_service(single)
            self._require_some_scope(principal, single)
            call.service_label = single
            services = [single]
        else:
            services = [s for s in self.discovery.names() if can_list(principal.scopes, s)]
        fetched = await asyncio.gather(
            *(self.catalog.tools(s, principal) for s in services), return_exceptions=True
        )
        tools: list[dict[str, Any]] = []
        for service, result in zip(services, fetched, strict=True):
            if isinstance(result, BaseException):
                if single is not None:
                    raise self._as_gateway_error(result, service)
                log.warning("tools of a service left out of tools/list", target=service, error=repr(result))
                continue
            for name in result.order:
                entry = result.tools[name]
                if not entry.visible_to(principal.scopes, principal.tier):
                    continue
                raw = tasks.listed(call, entry)
                if single:
                    tools.append(raw)
                elif (qualified := _qualified(service, name)) is not None:
                    tools.append({**raw, "name": qualified})
        return self._result(call, {"tools": tools}, cacheable=True)

    async def _tools_call(self, call: Call) -> Reply:
        params = call.request.params
        name = params.get("name")
        if not isinstance(name, str) or not name:
            raise invalid_params("tools/call needs params.name: the tool's name, a string")
        arguments = params.get("arguments")
        if arguments is not None and not isinstance(arguments, dict):
            raise invalid_params("tools/call params.arguments must be an object")
        service, tool = self._split(call, name, "tool")
        call.service_label, call.tool_label = service, tool
        entry = await self._tool(call, service, tool, name)
        principal = call.principal
        if not covers(principal.scopes, entry.scope):
            raise GatewayError(
                ErrorCode.FORBIDDEN,
                f"missing scope {entry.scope!r} for tool {name!r}: this API key has "
                f"{', '.join(principal.scopes) or 'no scopes'}",
                extra={"required_scope": entry.scope},
            )
        if not entry.offered_on(principal.tier):
            raise GatewayError(
                ErrorCode.FORBIDDEN, f"tool {name!r} is not offered on the {principal.tier!r} tier"
            )
        if not call.legacy and (
            entry.param_headers or any(h.lower().startswith(_PARAM_PREFIX) for h in call.request.headers)
        ):
            rejection = validate_mcp_param_headers(entry.input_schema, arguments or {}, call.request.headers)
            if rejection is not None:
                raise GatewayError.protocol(rejection.code, rejection.message, data=rejection.data)
        as_task = tasks.requested(call)
        if as_task:
            tasks.require_task_support(entry, name)
        # /mcp/<service> at 2026-07-28 forwards the client's own request untouched.
        plain = call.request.service is not None and not call.legacy
        legacy_params = tasks.without_task(params) if call.legacy else None
        body = call.body if plain else self._rewritten(call, name=tool, params=legacy_params)
        key = entry.idempotency_key
        repeat = Repeat(
            f"tool {name!r}",
            safe=entry.repeatable,
            key=key,
            key_sent=key is not None and (arguments or {}).get(key) not in (None, ""),
        )
        reply = await self._forward(call, service, body, repeat=repeat, budget_s=entry.budget_s)
        if as_task and reply.outcome in ("ok", "tool_error"):  # the job's view: the task
            started = msgspec.json.decode(reply.body).get("result") or {}
            return Reply(self._encode(call.request.rpc_id, self.tasks.created(service, started, name)))
        return reply

    async def _tasks(self, call: Call) -> Reply:
        return self._result(call, await self.tasks.handle(call))

    async def tool_result(
        self, call: Call, service: str, tool: str, arguments: dict[str, Any]
    ) -> dict[str, Any]:
        """One call of a read-only or idempotent tool of `service` for the caller (the kit's job
        tools, for tasks): its CallToolResult, a tool error included; a JSON-RPC error raises."""
        params = {"name": tool, "arguments": arguments}
        body = request_body("tools/call", params, request_id=call.request_id[:12])
        raw = await self._exchange_timed(call, service, body, repeat=_READ)
        return self._result_or_raise(raw, service)

    async def gather(self, work: Mapping[str, Awaitable[_T]], *, what: str) -> dict[str, _T]:
        """Each service's answer, concurrently; a service that fails is left out (and logged)."""
        answers = await asyncio.gather(*work.values(), return_exceptions=True)
        kept: dict[str, _T] = {}
        for service, answer in zip(work, answers, strict=True):
            if isinstance(answer, BaseException):
                if not isinstance(answer, Exception):
                    raise answer
                log.warning(
                    "a service left out of a merged list",
                    target=service,
                    method=what,
                    error=repr(answer),
                    code=getattr(answer, "code", None),
                    retryable=getattr(answer, "retryable", None),
                )
            else:
                kept[service] = answer
        return kept

    async def _tool(self, call: Call, service: str, tool: str, shown: str) -> ToolEntry:
        await self._require_service(service, unknown=f"unknown tool {shown!r}: no service {service!r}")
        self._require_some_scope(call.principal, service)
        try:
            tools = await self.catalog.tools(service, call.principal)
            entry = tools.tools.get(tool)
            if entry is None:  # maybe deployed since the list was cached: look once more
                tools = await self.catalog.tools(service, call.principal, force=True)
                entry = tools.tools.get(tool)
        except GatewayError:
            raise
        except Exception as exc:
            raise self._as_gateway_error(exc, service) from None
        if entry is None:
            raise invalid_params(f"unknown tool {shown!r}: call tools/list for the tools this key may use")
        return entry

    async def _fetch_tools(self, service: str, principal: Principal) -> list[dict[str, Any]]:
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            params = {"cursor": cursor} if cursor else None
            raw = await self._exchange(
                principal,
                service,
                request_body("tools/list", params, request_id=uuid.uuid4().hex[:12]),
                request_id=uuid.uuid4().hex,
                repeat=_READ,
            )
            result = self._result_or_raise(raw, service)
            tools += [t for t in result.get("tools") or [] if isinstance(t, dict)]
            cursor = result.get("nextCursor")
            if not isinstance(cursor, str) or not cursor:
                break
        return tools

    # -- prompts, resources, completion ------------------------------------------------------------

    async def _prompts_get(self, call: Call) -> Reply:
        name = call.request.params.get("name")
        if not isinstance(name, str) or not name:
            raise invalid_params("prompts/get needs params.name: the prompt's name, a string")
        service, prompt = self._split(call, name, "prompt")
        call.service_label, call.tool_label = service, f"prompt:{prompt}"
        await self._require_service(service, unknown=f"unknown prompt {name!r}: no service {service!r}")
        self._require_scope(call.principal, scope_for(service, "read"), f"prompt {name!r}")
        return await self._forward(call, service, self._rewritten(call, name=prompt), repeat=_READ)

    async def _resources_read(self, call: Call) -> Reply:
        uri = call.request.params.get("uri")
        if not isinstance(uri, str) or not uri:
            raise invalid_params("resources/read needs params.uri, a string")
        service = call.request.service or self._service_of_uri(uri)
        call.service_label, call.tool_label = service, "resources/read"
        await self._require_service(service, unknown=f"no service serves {uri[:80]!r}")
        self._require_scope(call.principal, scope_for(service, "read"), "reading resources")
        return await self._forward(call, service, self._rewritten(call), repeat=_READ)

    async def _complete(self, call: Call) -> Reply:
        ref = call.request.params.get("ref")
        if not isinstance(ref, dict):
            raise invalid_params("completion/complete needs params.ref, an object")
        if call.request.service is not None:
            service = call.request.service
            body = self._rewritten(call)
        elif ref.get("type") == "ref/prompt" and isinstance(ref.get("name"), str):
            service, prompt = self._split(call, ref["name"], "prompt")
            params = {**call.request.params, "ref": {**ref, "name": prompt}}
            body = self._rewritten(call, params=params)
        elif ref.get("type") == "ref/resource" and isinstance(ref.get("uri"), str):
            service = self._service_of_uri(ref["uri"])
            body = self._rewritten(call)
        else:
            raise invalid_params("completion/complete params.ref must be a ref/prompt or ref/resource")
        call.service_label = service
        await self._require_service(service)
        self._require_scope(call.principal, scope_for(service, "read"), "completions")
        return await self._forward(call, service, body, repeat=_READ)

    async def _fan_out_list(self, call: Call, method: str) -> Reply:
        key = _LIST_KEYS[method]
        principal = call.principal
        services = [s for s in self.discovery.names() if covers(principal.scopes, scope_for(s, "read"))]

        async def one(service: str) -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = []
            cursor: str | None = None
            for _ in range(_MAX_PAGES):
                params = dict(call.request.params)
                params.pop("cursor", None)
                if cursor:
                    params["cursor"] = cursor
                raw = await self._exchange(
                    principal,
                    service,
                    self._rewritten(call, params=params),
                    request_id=call.request_id,
                    repeat=_READ,
                )
                result = self._result_or_raise(raw, service)
                items += [i for i in result.get(key) or [] if isinstance(i, dict)]
                cursor = result.get("nextCursor")
                if not isinstance(cursor, str) or not cursor:
                    break
            if method == "prompts/list":
                named = ((i, _qualified(service, i.get("name"))) for i in items)
                items = [{**i, "name": name} for i, name in named if name is not None]
            return items

        gathered = await self.gather({s: one(s) for s in services}, what=method)
        merged = [item for items in gathered.values() for item in items]
        return self._result(call, {key: merged}, cacheable=True)

    # -- forwarding ----------------------------------------------------------------------------------

    async def _forward(
        self, call: Call, service: str, body: bytes, *, repeat: Repeat, budget_s: float | None = None
    ) -> Reply:
        raw = await self._exchange_timed(
            call, service, body, repeat=repeat, budget_s=budget_s, on_progress=call.on_progress
        )
        return self._passthrough(call, raw, service, repeat)

    async def _exchange_timed(
        self,
        call: Call,
        service: str,
        body: bytes,
        *,
        repeat: Repeat,
        budget_s: float | None = None,
        on_progress: OnProgress | None = None,
    ) -> bytes:
        """`_exchange` for the caller, the wait counted in the request's upstream time."""
        started = time.perf_counter()
        try:
            return await self._exchange(
                call.principal,
                service,
                body,
                request_id=call.request_id,
                repeat=repeat,
                on_progress=on_progress,
                budget_s=budget_s,
                client_request=call.client_request,
            )
        finally:
            call.upstream_s += time.perf_counter() - started

    async def _exchange(
        self,
        principal: Principal,
        service: str,
        body: bytes,
        *,
        request_id: str,
        repeat: Repeat,
        on_progress: OnProgress | None = None,
        budget_s: float | None = None,
        client_request: str | None = None,
    ) -> bytes:
        """One exchange with a healthy replica of `service`, sent once (see the module docstring),
        within `budget_s` (a tool's budget; else MCPMESH_CALL_TIMEOUT_S), at most MCPMESH_MAX_CALL_S."""
        stamp = self.stamps.stamp(principal, service)
        allowed_s = min(budget_s if budget_s is not None else self.call_timeout_s, self.max_call_s)
        deadline = Deadline.after(allowed_s)
        while True:
            instance = await self._target(service)
            if deadline.remaining() <= 0:  # nothing was delivered: safe to retry
                raise self._unavailable(service, "no replica took the request in time")
            try:
                return await exchange(
                    self.bus,
                    org_id=principal.org_id,
                    service=service,
                    body=body,
                    stamp=stamp,
                    deadline=deadline,
                    request_id=request_id,
                    instance=instance,
                    max_result_bytes=self.max_result_bytes,
                    on_progress=on_progress,
                    client_request=client_request,
                )
            except NotDelivered as exc:  # that replica never saw the request: try again
                assert instance is not None
                if exc.reason == NO_RESPONDERS:
                    self.discovery.drop(service, instance)  # it is gone: pick another
                else:
                    await asyncio.sleep(0.05)  # our connection is down: the bus reconnects
            except MeshException as exc:
                raise self._as_gateway_error(exc, service, repeat, waited_s=allowed_s) from None

    async def _target(self, service: str) -> str | None:
        """The replica to address (None: any, NATS picks); 503 when none answers health checks."""
        try:
            return self.discovery.target(service)
        except NoHealthyReplica:
            await self.discovery.refresh_if_older(1.0)  # a replica started a moment ago is found
        try:
            return self.discovery.target(service)
        except NoHealthyReplica:
            raise self._unavailable(
                service, "no replica is answering health checks (paused, overloaded or restarting)"
            ) from None

    def _unavailable(self, service: str, why: str) -> GatewayError:
        after = self.discovery.retry_after_s
        return GatewayError(
            ErrorCode.UNAVAILABLE,
            f"service {service!r} is unavailable: {why}; retry in {after} s",
            headers={"Retry-After": str(after)},
        )

    def _as_gateway_error(
        self,
        exc: BaseException,
        service: str,
        repeat: Repeat | None = None,
        *,
        waited_s: float | None = None,
    ) -> GatewayError:
        if isinstance(exc, GatewayError):
            return exc
        if isinstance(exc, MeshException):
            code = exc.error.code
            if code is ErrorCode.TIMEOUT:
                return timed_out(service, repeat or _READ, waited_s=waited_s or self.call_timeout_s)
            if code is ErrorCode.UNAVAILABLE:  # the request reached no replica: safe to send again
                return self._unavailable(service, "no replica took the request")
            return GatewayError(
                code,
                f"service {service!r}: {exc.error.message}",
                retryable=exc.error.retryable,
                extra=exc.error.details,
            )
        log.error("unexpected failure talking to a service", target=service, error=repr(exc))
        return GatewayError(ErrorCode.INTERNAL, f"service {service!r} could not be reached", status=502)

    def _passthrough(self, call: Call, raw: bytes, service: str, repeat: Repeat) -> Reply:
        """The service's reply as the client's reply: errors mapped to a status, legacy results reshaped."""
        try:
            head = msgspec.json.decode(raw, type=_ReplyHead)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise GatewayError(
                ErrorCode.INTERNAL, f"service {service!r} sent a malformed reply", status=502
            ) from None
        if head.error is not None:
            return self._service_error(call, head.error, service, repeat)
        outcome = "tool_error" if head.result is not None and head.result.isError else "ok"
        if not call.legacy:
            return Reply(raw, outcome=outcome)
        result = msgspec.json.decode(raw).get("result") or {}
        return Reply(self._legacy_result(call, result), outcome=outcome)

    def _service_error(self, call: Call, error: _ErrorHead, service: str, repeat: Repeat) -> Reply:
        code = mesh_code_of(error.code)
        if isinstance(error.data, dict) and isinstance(error.data.get("code"), str):
            with contextlib.suppress(ValueError):
                code = ErrorCode(error.data["code"])
        if code is ErrorCode.TIMEOUT:  # the service stopped it at its deadline: say what that means
            raise timed_out(service, repeat, waited_s=None)
        if code is ErrorCode.UNAUTHENTICATED:
            # The client's key was fine: the service refused the gateway's own stamp.
            log.error("a service refused the gateway's stamp", target=service, detail=error.message)
            raise GatewayError(
                ErrorCode.INTERNAL,
                f"service {service!r} refused the gateway's credentials: the operators were alerted",
                status=502,
            )
        status = 502 if error.code == INTERNAL_ERROR else HTTP_STATUS.get(error.code, 200)
        body: dict[str, Any] = {"code": error.code, "message": error.message}
        if error.data is not None:
            body["data"] = error.data
        return Reply(
            msgspec.json.encode({"jsonrpc": "2.0", "id": call.request.rpc_id, "error": body}),
            status=status,
            headers={"Retry-After": "1"} if status == 503 else {},  # e.g. the service is at capacity
            outcome=code.value,
        )

    def _result_or_raise(self, raw: bytes, service: str) -> dict[str, Any]:
        try:
            decoded = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            raise GatewayError(
                ErrorCode.INTERNAL, f"service {service!r} sent a malformed reply", status=502
            ) from None
        if not isinstance(decoded, dict):
            raise GatewayError(ErrorCode.INTERNAL, f"service {service!r} sent a malformed reply", status=502)
        if isinstance(decoded.get("error"), dict):  # the service's MeshError, kept whole
            error = exception_from_error(decoded["error"]).error
            raise GatewayError(
                error.code,
                f"service {service!r}: {error.message}",
                retryable=error.retryable,
                extra=error.details,
            )
        result = decoded.get("result")
        if not isinstance(result, dict):
            raise GatewayError(
                ErrorCode.INTERNAL, f"service {service!r} sent a reply without a result", status=502
            )
        return result

    # -- shaping -----------------------------------------------------------------------------------

    def _rewritten(
        self, call: Call, *, name: str | None = None, params: Mapping[str, Any] | None = None
    ) -> bytes:
        """The bus request: the client's params (renamed where asked) with a 2026-07-28 `_meta` envelope."""
        out = dict(params if params is not None else call.request.params)
        if name is not None:
            out["name"] = name
        meta = out.get("_meta")
        meta = dict(meta) if isinstance(meta, dict) else {}
        if call.legacy:
            meta.update(modern_envelope(LATEST_MODERN_VERSION, call.client_info, call.client_capabilities))
        out["_meta"] = meta
        return msgspec.json.encode(
            {"jsonrpc": "2.0", "id": call.request.rpc_id, "method": call.request.method, "params": out}
        )

    def _result(self, call: Call, result: dict[str, Any], *, cacheable: bool = False) -> Reply:
        if call.legacy:
            return Reply(self._legacy_result(call, result))
        shaped = dict(result)
        shaped.setdefault("resultType", "complete")
        if cacheable:
            shaped.setdefault("ttlMs", 0)
            shaped.setdefault("cacheScope", "private")
        shaped["_meta"] = {**(shaped.get("_meta") or {}), SERVER_INFO_META_KEY: self._server_info}
        return Reply(self._encode(call.request.rpc_id, shaped))

    def _legacy_result(self, call: Call, result: dict[str, Any]) -> bytes:
        version = call.protocol_version
        method = call.request.method
        shaped = {k: v for k, v in result.items() if k not in ("resultType", "ttlMs", "cacheScope")}
        meta = shaped.get("_meta")
        if isinstance(meta, dict) and SERVER_INFO_META_KEY in meta:
            meta = {k: v for k, v in meta.items() if k != SERVER_INFO_META_KEY}
            if meta:
                shaped["_meta"] = meta
            else:
                del shaped["_meta"]
        if method in spec_methods.SPEC_CLIENT_METHODS and version in HANDSHAKE_PROTOCOL_VERSIONS:
            try:
                shaped = spec_methods.serialize_server_result(method, version, shaped)
            except (ValidationError, KeyError):
                raise GatewayError(
                    ErrorCode.INTERNAL,
                    f"the result of {method} cannot be expressed in protocol version {version}",
                    status=502,
                ) from None
        return self._encode(call.request.rpc_id, shaped)

    @staticmethod
    def _encode(rpc_id: Any, result: dict[str, Any]) -> bytes:
        return msgspec.json.encode({"jsonrpc": "2.0", "id": rpc_id, "result": result})

    # -- checks ------------------------------------------------------------------------------------

    def _split(self, call: Call, name: str, what: str) -> tuple[str, str]:
        """(service, name at the service) for a prefixed `/mcp` name, or the path's service."""
        if call.request.service is not None:
            return call.request.service, name
        split = split_qualified_name(name)
        if split is None:
            shown = name if len(name) <= 80 else name[:77] + "..."
            raise invalid_params(
                f"unknown {what} {shown!r}: on /mcp {what}s are named '<service>_<{what}>', "
                f"e.g. 'context_create'; call {what}s/list"
            )
        return split

    @staticmethod
    def _service_of_uri(uri: str) -> str:
        scheme, sep, _rest = uri.partition("://")
        try:
            if sep:
                return validate_service_name(scheme)
        except InvalidIdentifier:
            pass
        raise invalid_params(
            f"no service serves {uri[:80]!r}: resource URIs on /mcp start with their service, e.g. 'context://...'"
        )

    async def _require_service(self, service: str, *, unknown: str | None = None) -> None:
        """Known: discovery saw it within `MCPMESH_REPLICA_FORGET_S`, or its tools are cached.
        Only a service never seen is unknown; a known one that is down is a 503 when called."""
        if self._known(service):
            return
        await self.discovery.refresh_if_older(1.0)
        if not self._known(service):
            if unknown is not None:
                raise invalid_params(unknown)
            raise GatewayError(ErrorCode.NOT_FOUND, f"no service {service!r} is running in this mesh")

    def _known(self, service: str) -> bool:
        return self.discovery.has(service) or self.catalog.cached(service) is not None

    @staticmethod
    def _require_some_scope(principal: Principal, service: str) -> None:
        if not can_list(principal.scopes, service):
            raise GatewayError(
                ErrorCode.FORBIDDEN,
                f"missing scope '{service}:read' or '{service}:write': this API key has "
                f"{', '.join(principal.scopes) or 'no scopes'}",
                extra={"required_scope": scope_for(service, "read")},
            )

    @staticmethod
    def _require_scope(principal: Principal, scope: str, what: str) -> None:
        if not covers(principal.scopes, scope):
            raise GatewayError(
                ErrorCode.FORBIDDEN,
                f"missing scope {scope!r} for {what}: this API key has {', '.join(principal.scopes) or 'no scopes'}",
                extra={"required_scope": scope},
            )


def _qualified(service: str, name: Any) -> str | None:
    """`<service>_<name>` for `/mcp`; None (the item is left out, with a warning) when the service
    lists a name no client would accept (the kit refuses such names, other servers might not)."""
    try:
        return qualified_tool_name(service, name if isinstance(name, str) else "")
    except InvalidIdentifier:
        log.warning("a name left out of /mcp", target=service, pattern=TOOL_NAME_PATTERN)
        return None
