"""The service kit: an `mcp` SDK server served on the bus, one NATS request = one JSON-RPC exchange
(its reply one message, or a stream of frames: progress while it runs, the response in parts).

Every request is checked before any handler runs: a valid stamp for this service
(audience), the subject's org equal to the stamp's org, and the scope the method or
tool declares. The exchange itself goes through the SDK's single-exchange
(stateless 2026-07-28) path, so tools, resources and prompts are plain SDK code.
"""

from __future__ import annotations

import functools
import inspect
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

import anyio
import msgspec
from mcp.server.connection import Connection
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.context import Context
from mcp.server.mcpserver.exceptions import (
    ResourceNotFoundError,
    ToolError,
    UnexpectedResourceError,
    UnexpectedToolError,
)
from mcp.server.runner import modern_error_data, serve_one
from mcp.shared.exceptions import MCPError, NoBackChannelError
from mcp.shared.inbound import InboundLadderRejection, classify_inbound_request
from mcp.shared.jsonrpc_dispatcher import progress_token_from_params
from mcp.shared.message import MessageMetadata, ServerMessageMetadata
from mcp.shared.transport_context import TransportContext
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    CallToolResult,
    GetPromptResult,
    InputRequiredResult,
    ProgressToken,
    RequestId,
    ToolAnnotations,
)
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import AnyUrl, ValidationError

from mcpmesh.bus import Bus, Deadline
from mcpmesh.bus.frames import ReplyWriter
from mcpmesh.proto import headers as h
from mcpmesh.proto.errors import ErrorCode, MeshError, MeshException, tool_error_result
from mcpmesh.proto.events import TenantCommand, TenantDataReply, UsageEvent
from mcpmesh.proto.ids import (
    QUALIFIER,
    InvalidIdentifier,
    qualified_tool_name,
    validate_org_id,
    validate_service_name,
)
from mcpmesh.proto.subjects import org_of_service_subject, usage_subject
from mcpmesh.proto.tiers import OrgSettings
from mcpmesh.secrets import SECRETS_KIND
from mcpmesh.service.admission import Overloaded
from mcpmesh.service.arguments import describe_invalid_arguments
from mcpmesh.service.call import CURRENT_CALL, Call, SettingsCache
from mcpmesh.service.cancel import RunningCalls
from mcpmesh.service.settings import ServiceSettings, StartupError
from mcpmesh.telemetry.logs import bind_request, get_logger, update_request
from mcpmesh.telemetry.metrics import Metrics
from mcpmesh.telemetry.tracing import ORG_ATTRIBUTE, extract_context, tracer
from mcpmesh.tenancy.commands import CommandVerifier
from mcpmesh.tenancy.scopes import covers, scope_for
from mcpmesh.tenancy.stamp import Stamp, StampVerifier

if TYPE_CHECKING:
    from mcpmesh.secrets import MasterKeys
    from mcpmesh.service.jobs import JobRunner
    from mcpmesh.store import Collection, Index, Store, TenantStore
    from mcpmesh.vectors import Vectors

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
S = TypeVar("S")
#: Opens what the service's handlers share (clients, caches, background tasks) and yields it as
#: one typed state object; everything opened is closed when the context exits (at stop).
Lifespan = Callable[["MeshService"], AbstractAsyncContextManager[Any]]
Access = Literal["read", "write"]
#: A job tool's check of a start (`job_tool(start_check=...)`): the caller's `Call` and the arguments.
StartCheck = Callable[[Call, dict[str, Any]], Awaitable[None]]
log = get_logger("mcpmesh.service")

#: Key of a tool's `_meta` entry naming the scope the tool needs.
TOOL_SCOPE_META = "mcpmesh/scope"
#: Key of a tool's `_meta` entry listing the tiers it is offered on (absent: every tier).
TOOL_TIERS_META = "mcpmesh/tiers"
#: Key of a tool's `_meta` entry naming the argument it deduplicates on (an idempotency key).
TOOL_IDEMPOTENCY_KEY_META = "mcpmesh/idempotency_key"
#: Key of a tool's `_meta` entry giving its time budget in seconds (what one call may take).
TOOL_BUDGET_META = "mcpmesh/budget_s"
#: A tool's time budget when it declares none.
DEFAULT_BUDGET_S = 30.0

#: Methods any key with some scope on the service may use.
_LISTING = frozenset(
    {"tools/list", "resources/list", "resources/templates/list", "prompts/list", "server/discover", "ping"}
)


@dataclass
class _BusDispatchContext:
    """`DispatchContext` for one bus exchange: no back-channel (stateless protocol); notifications
    about the request go to the caller as progress frames when it asked for them."""

    transport: TransportContext
    request_id: RequestId
    message_metadata: MessageMetadata
    progress_token: ProgressToken | None = None
    writer: ReplyWriter | None = None  # the request's reply inbox, when the caller relays progress
    cancel_requested: anyio.Event = field(default_factory=anyio.Event)
    can_send_request: bool = field(default=False, init=False)

    async def send_raw_request(
        self, method: str, params: Mapping[str, Any] | None, opts: Any = None
    ) -> dict[str, Any]:
        raise NoBackChannelError(method)

    async def notify(self, method: str, params: Mapping[str, Any] | None, opts: Any = None) -> None:
        """A notification about this request (progress, a log line: partial output) goes to the
        caller as a progress frame on the request's reply inbox; dropped when nobody relays it."""
        if self.writer is None or not self.writer.streaming:
            return
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = dict(params)
        await self.writer.progress(msgspec.json.encode(message))

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        if self.progress_token is None:
            return
        params: dict[str, Any] = {"progressToken": self.progress_token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        await self.notify("notifications/progress", params)


class _KitServer(MCPServer):
    """The SDK server, with clean refusals where the SDK's own would leak or read as a crash:
    arguments failing a schema, an unknown prompt or resource, a prompt's missing arguments.
    A resource function raises MeshException as a tool does; it becomes a JSON-RPC error."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc, UnexpectedToolError) or not isinstance(exc.__cause__, ValidationError):
                raise
            _mark_outcome(ErrorCode.INVALID_REQUEST.value)
            message = describe_invalid_arguments(exc.__cause__)
            return _failed(MeshError(ErrorCode.INVALID_REQUEST, message))

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Context[Any, Any] | None = None
    ) -> GetPromptResult | InputRequiredResult:
        prompt = next((p for p in await self.list_prompts() if p.name == name), None)
        if prompt is None:
            raise _refusal(
                ErrorCode.NOT_FOUND,
                f"unknown prompt {_shown(name)}: prompts/list names this service's prompts",
            )
        declared = {a.name: a.required for a in prompt.arguments or ()}
        given = arguments or {}
        missing = sorted(n for n, required in declared.items() if required and n not in given)
        unknown = sorted(_shown(n) for n in given if n not in declared)
        if missing or unknown:
            problems = [f"{n}: required" for n in missing] + [
                f"{n}: not an argument of this prompt" for n in unknown
            ]
            raise _refusal(
                ErrorCode.INVALID_REQUEST,
                f"invalid arguments: {'; '.join(problems[:5])}. prompts/list lists each prompt's arguments",
            )
        try:
            return await super().get_prompt(name, arguments, context)
        except ValueError as exc:  # the SDK reports every rendering failure as a ValueError
            cause = _validation_cause(exc)
            if cause is None:
                raise
            raise _refusal(
                ErrorCode.INVALID_REQUEST, describe_invalid_arguments(cause, what="prompt")
            ) from None

    async def read_resource(
        self, uri: AnyUrl | str, context: Context[Any, Any] | None = None
    ) -> Iterable[ReadResourceContents] | InputRequiredResult:
        try:
            return await super().read_resource(uri, context)
        except ResourceNotFoundError:
            raise _refusal(
                ErrorCode.NOT_FOUND,
                f"unknown resource {_shown(str(uri))}: resources/list and resources/templates/list "
                "name what this service serves",
                uri=str(uri)[:_SHOWN_MAX],
            ) from None
        except UnexpectedResourceError as exc:  # raised by the resource function (or its arguments)
            cause = exc.__cause__
            if isinstance(cause, MeshException):
                if cause.error.code in (ErrorCode.NOT_FOUND, ErrorCode.INVALID_REQUEST):
                    raise _refusal(cause.error.code, cause.error.message, uri=str(uri)[:_SHOWN_MAX]) from None
                raise MCPError(
                    cause.jsonrpc_code, cause.error.message, msgspec.to_builtins(cause.error)
                ) from None
            if isinstance(cause, ValidationError):
                message = describe_invalid_arguments(cause, what="resource template")
                raise _refusal(ErrorCode.INVALID_REQUEST, message, uri=str(uri)[:_SHOWN_MAX]) from None
            raise


class MeshService:
    """Declare tools with `@service.tool(access=...)`; run with `mcpmesh.service.run(service)`."""

    def __init__(
        self,
        name: str,
        *,
        version: str = "0.1.0",
        description: str = "",
        instructions: str | None = None,
        store_kinds: Mapping[str, list[Index]] | None = None,
        uses_vectors: bool = False,
        lifespan: Lifespan | None = None,
        grant_index: str | None = None,
        secrets: bool = False,
    ) -> None:
        """`lifespan(service)`: an async context manager entered at start (stores and bus ready)
        and exited at stop; what it yields is the state handlers get with `call.state(Type)`.
        `grant_index`: the store kind where owners file pointers to grants they gave (see
        `mcpmesh.service.grants`). `secrets=True`: the service keeps tenant secrets (`call.secrets`,
        the `secret_set`/`secrets`/`secret_delete` tools; see `mcpmesh.service.vault`)."""
        self.name = validate_service_name(name)
        self.version = version
        self.description = description
        self.mcp: MCPServer = _KitServer(name=f"mcpmesh-{name}", version=version, instructions=instructions)
        self.store_kinds = dict(store_kinds or {})
        if grant_index is not None and grant_index not in self.store_kinds:
            raise ValueError(f"grant_index {grant_index!r} is not one of the declared store_kinds")
        self.grant_index_kind = grant_index
        self.uses_vectors = uses_vectors
        self._lifespan = lifespan
        self._lifespan_stack: AsyncExitStack | None = None
        self._state: object | None = None
        self.tool_scopes: dict[str, str] = {}
        self.tool_tiers: dict[str, frozenset[str]] = {}
        self.tool_budgets: dict[str, float] = {}  # seconds one call of each tool may take
        self.repeatable_tools: set[str] = set()  # read-only or idempotent
        self.settings = ServiceSettings()
        self.bus: Bus | None = None
        self.metrics = Metrics()
        self._verifier: StampVerifier | None = None
        self._commands: CommandVerifier | None = None
        self._store: Store | None = None
        self._vectors: Vectors | None = None
        self._org_settings = SettingsCache()
        self._stamp_cache: dict[str, Stamp] = {}
        self._on_start: list[Callable[[MeshService], Awaitable[None]]] = []
        self._on_stop: list[Callable[[MeshService], Awaitable[None]]] = []
        self.jobs: JobRunner | None = None  # set by the first @service.job_tool
        self.stats = {"calls": 0, "errors": 0, "latency_ms_total": 0.0}
        self.running = RunningCalls()  # what a caller may cancel (see mcpmesh.service.cancel)
        self.keeps_secrets = secrets
        self.master_keys: MasterKeys | None = None  # loaded at start when `secrets=True`
        if secrets:
            from mcpmesh.service.vault import enable_secrets

            enable_secrets(self)

    # -- declaring -------------------------------------------------------------------------------

    def tool(
        self,
        *,
        access: Access = "read",
        scope: str | None = None,
        name: str | None = None,
        description: str | None = None,
        tiers: Sequence[str] | None = None,
        read_only: bool | None = None,
        idempotent: bool | None = None,
        destructive: bool | None = None,
        open_world: bool = True,
        idempotency_key: str | None = None,
        budget_s: float = DEFAULT_BUDGET_S,
        **sdk_options: Any,
    ) -> Callable[[F], F]:
        """Register an SDK tool that needs `<service>:<access>` (or an explicit `scope`, e.g. `admin`),
        optionally only for orgs on some `tiers` (e.g. `["pro", "enterprise"]`).

        `budget_s` is the longest one call may take (default 30 s; minutes for a slow tool): the
        gateway and the kit stop the call at min(the caller's deadline, this budget, the operator's
        `MCPMESH_MAX_CALL_S`). Work longer than a few minutes belongs in a `job_tool`.

        What the tool does to the world is published as MCP `ToolAnnotations`, and the gateway
        relies on it when a call times out (may the client simply retry?), so declare it truthfully:
        `read_only` (default: `access == "read"`), `idempotent` (the same arguments again change
        nothing more; default: `read_only`), `destructive` (it may overwrite or delete, rather than
        only add; default: `not read_only`), `open_world` (it reaches outside the mesh's own stores,
        e.g. an LLM provider or a customer's API). `idempotency_key` names an argument the tool
        deduplicates on: a second call with the same value does nothing and returns the first
        result, so a client may resend a call that timed out with the same key.
        """
        if "annotations" in sdk_options:
            raise TypeError("declare annotations with read_only=, idempotent=, destructive=, open_world=")
        ro = access == "read" if read_only is None else read_only
        hints = ToolAnnotations(
            read_only_hint=ro,
            idempotent_hint=ro if idempotent is None else idempotent,
            destructive_hint=(not ro) if destructive is None else destructive,
            open_world_hint=open_world,
        )
        if ro and (hints.destructive_hint or idempotency_key is not None):
            raise ValueError("a read_only tool is neither destructive nor in need of an idempotency_key")
        if not budget_s > 0:
            raise ValueError(f"budget_s must be positive (got {budget_s!r})")

        def register(fn: F) -> F:
            tool_name = name or fn.__name__
            qualified = qualified_tool_name(self.name, tool_name)  # refuses a name clients would reject
            required = scope or scope_for(self.name, access)
            self.tool_scopes[tool_name] = required
            self.tool_budgets[tool_name] = budget_s
            if hints.read_only_hint or hints.idempotent_hint:
                self.repeatable_tools.add(tool_name)
            # The scope is published in the tool's _meta so the gateway can filter tools/list per key.
            meta = {
                **(sdk_options.pop("meta", None) or {}),
                TOOL_SCOPE_META: required,
                TOOL_BUDGET_META: budget_s,
            }
            if tiers is not None:
                self.tool_tiers[tool_name] = frozenset(tiers)
                meta[TOOL_TIERS_META] = sorted(tiers)
            if idempotency_key is not None:
                if idempotency_key not in inspect.signature(fn).parameters:
                    raise ValueError(f"idempotency_key {idempotency_key!r} is not an argument of {tool_name}")
                meta[TOOL_IDEMPOTENCY_KEY_META] = idempotency_key
            self.mcp.tool(
                name=tool_name,
                description=description or fn.__doc__,
                meta=meta,
                annotations=hints,
                **sdk_options,
            )(_clean_failures(fn, qualified))
            return fn

        return register

    def job_tool(
        self,
        *,
        access: Access = "write",
        resumable: bool = False,
        budget_s: float = 3600.0,
        name: str | None = None,
        description: str | None = None,
        tiers: Sequence[str] | None = None,
        idempotency_key: str | None = None,
        start_check: StartCheck | None = None,
        **sdk_options: Any,
    ) -> Callable[[F], F]:
        """Register a tool that runs as a durable job (see `mcpmesh.service.jobs`): the call answers
        at once with the job's id; the handler gets a `JobContext` parameter instead of `Context`.
        `resumable`: a run interrupted by a stopped replica resumes from its last checkpoint
        (else it fails); `budget_s`: the job's whole time budget, resumes included;
        `idempotency_key`: an argument naming the operation — a start with a value the org
        already started this tool with answers with that job instead of starting another;
        `start_check(call, arguments)`: run before the job is recorded, it refuses the start by
        raising a `MeshException` (what the job will need of the caller, e.g. scopes)."""

        def register(fn: F) -> F:
            from mcpmesh.service.jobs.tools import register_job_tool

            register_job_tool(
                self,
                fn,
                access=access,
                resumable=resumable,
                budget_s=budget_s,
                name=name,
                description=description,
                tiers=tiers,
                sdk_options=sdk_options,
                idempotency_key=idempotency_key,
                start_check=start_check,
            )
            return fn

        return register

    def resource(self, uri: str, **sdk_options: Any) -> Callable[[F], F]:
        """Register an SDK resource (read access)."""
        return self.mcp.resource(uri, **sdk_options)

    def prompt(self, name: str | None = None, **sdk_options: Any) -> Callable[[F], F]:
        return self.mcp.prompt(name=name, **sdk_options)

    def on_start(
        self, fn: Callable[[MeshService], Awaitable[None]]
    ) -> Callable[[MeshService], Awaitable[None]]:
        """Run `fn(service)` once the bus and stores are up (e.g. to subscribe to control subjects)."""
        self._on_start.append(fn)
        return fn

    def on_stop(
        self, fn: Callable[[MeshService], Awaitable[None]]
    ) -> Callable[[MeshService], Awaitable[None]]:
        """Run `fn(service)` at shutdown, after in-flight calls finished, before the bus drains."""
        self._on_stop.append(fn)
        return fn

    # -- resources of a running service ---------------------------------------------------------

    @property
    def store(self) -> Store:
        if self._store is None:
            from mcpmesh.store import Store, connect_database

            db = connect_database(self.settings.mongodb_url, self.settings.mongodb_database)
            self._store = Store(db, self.store_kinds)
        return self._store

    @property
    def vectors(self) -> Vectors:
        if self._vectors is None:
            from mcpmesh.vectors import Vectors, connect_qdrant

            client = connect_qdrant(
                self.settings.qdrant_url, path=self.settings.qdrant_path, api_key=self.settings.qdrant_api_key
            )
            self._vectors = Vectors(client)
        return self._vectors

    def state(self, kind: type[S]) -> S:
        """The state the lifespan yielded, checked to be a `kind` (so its type is known statically)."""
        state = self._state
        if not isinstance(state, kind):
            raise MeshException(
                ErrorCode.INTERNAL, f"service {self.name} is not running (no {kind.__name__} state)"
            )
        return state

    async def grant_index(self, org_id: str) -> Collection:
        """The org's grant-index collection (`grant_index=` kind): where an owner files a pointer to
        a grant it gave that org. The pointer grants nothing: access is checked at the owner's side."""
        if self.grant_index_kind is None:
            raise MeshException(ErrorCode.INTERNAL, f"service {self.name} declares no grant_index")
        return await self.store.for_tenant(org_id).collection(self.grant_index_kind)

    async def tenants(self, kind: str) -> AsyncIterator[TenantStore]:
        """The store of each org that has a `kind` collection, for background maintenance that
        runs for no caller (sweeps); a handler reaches other orgs only with `call.shared`."""
        for org_id in await self.store.orgs_with(kind):
            yield self.store.for_tenant(org_id)

    async def org_settings(self, org_id: str, tier: str) -> OrgSettings:
        return await self._org_settings.get(self.bus, org_id, tier)

    async def started(self, settings: ServiceSettings, bus: Bus | None) -> None:
        """Called by the runner once configuration and the bus are ready.

        A service with store kinds connects now, so a missing MONGODB_URL stops it at
        start (StoreNotConfigured) rather than at its first call."""
        self.settings = settings
        self.bus = bus
        self.metrics.configure(settings.metrics)
        if self.store_kinds:
            _ = self.store
        if self.uses_vectors:  # local mode's directory held by another process: stop here, saying so
            from mcpmesh.vectors import QdrantPathInUse

            try:
                _ = self.vectors
            except QdrantPathInUse as exc:
                raise StartupError(str(exc)) from None
        if self.keeps_secrets:  # no master key: stop here (SecretsConfigError names the variable)
            from mcpmesh.service.vault import load_master_keys

            self.master_keys = load_master_keys(settings)
        if settings.stamp_public_key:
            self._verifier = StampVerifier(settings.stamp_public_key)
            self._commands = CommandVerifier(settings.stamp_public_key)
        if self._lifespan is not None:
            stack = AsyncExitStack()
            self._state = await stack.enter_async_context(self._lifespan(self))
            self._lifespan_stack = stack
        for hook in self._on_start:
            await hook(self)

    async def stopping(self) -> None:
        """Called by the runner at shutdown: stop hooks (a failing one does not stop the others),
        then the lifespan's exit, then the store and vector clients the kit opened are closed."""
        for hook in self._on_stop:
            try:
                await hook(self)
            except Exception:
                log.exception("stop hook failed", hook=getattr(hook, "__name__", "?"))
        stack, self._lifespan_stack = self._lifespan_stack, None
        if stack is not None:
            try:
                await stack.aclose()
            except Exception:
                log.exception("lifespan exit failed")
            self._state = None
        store, self._store = self._store, None
        if store is not None:
            store.close()
        vectors, self._vectors = self._vectors, None
        if vectors is not None:
            await vectors.client.close()

    async def tenant_data(self, action: str, data: bytes) -> TenantDataReply:
        """Delete or export everything this service holds for one org, on the gateway's signed
        authorization for exactly this action, org and service."""
        try:
            command = msgspec.json.decode(data, type=TenantCommand)
            org_id = validate_org_id(command.org_id)
        except (msgspec.DecodeError, msgspec.ValidationError, InvalidIdentifier) as exc:
            error = MeshError(ErrorCode.INVALID_REQUEST, f"bad tenant command: {exc}")
            return TenantDataReply(service=self.name, org_id="-", error=error)
        try:
            if self._commands is None:
                raise MeshException(ErrorCode.UNAVAILABLE, "service has no stamp key configured")
            self._commands.verify(command.authorization, action=action, org_id=org_id, service=self.name)
        except MeshException as exc:
            log.warning("tenant command refused", action=action, org_id=org_id, reason=exc.error.message)
            return TenantDataReply(service=self.name, org_id=org_id, error=exc.error)
        dropped: list[str] = []
        export: dict[str, list[dict[str, Any]]] = {}
        if action == "delete":
            if self.store_kinds:
                dropped += (await self.store.drop_tenant(org_id)).collections
            if self.uses_vectors:
                dropped += await self.vectors.drop_tenant(org_id)
            log.info("tenant data dropped", org_id=org_id, collections=len(dropped))
            return TenantDataReply(service=self.name, org_id=org_id, dropped=dropped)
        if self.store_kinds:  # sealed secrets are never exported (useless without the master key)
            async for item in self.store.export_tenant(org_id, exclude={SECRETS_KIND}):
                document = item.document
                if self.jobs is not None and item.kind == self.jobs.kind:
                    document = {k: v for k, v in document.items() if k != "ticket"}  # a credential
                export.setdefault(item.kind, []).append(document)
        if self.uses_vectors:
            async for point in self.vectors.export_tenant(org_id):
                export.setdefault(f"vectors:{point.kb}", []).append(point.as_json())
        return TenantDataReply(service=self.name, org_id=org_id, export=export)

    # -- serving one bus exchange ----------------------------------------------------------------

    def verify(self, token: str | None) -> Stamp:
        """Verify a stamp for this service; verified tokens are cached until they expire."""
        if token and (hit := self._stamp_cache.get(token)) is not None:
            if hit.exp > time.time():
                return hit
            del self._stamp_cache[token]
        if self._verifier is None:
            raise MeshException(ErrorCode.UNAVAILABLE, "service has no stamp key configured")
        stamp = self._verifier.verify(token, audience=self.name)
        if len(self._stamp_cache) > 10_000:
            self._stamp_cache.clear()
        self._stamp_cache[token or ""] = stamp
        return stamp

    def qualified(self, tool: str) -> str:
        """A tool's name as clients of the aggregate `/mcp` see it (`<service>_<tool>`)."""
        return f"{self.name}{QUALIFIER}{tool}"

    def time_budget(self, tool: Any) -> float:
        """Seconds a request may take at most (before the caller's own deadline): a tool's budget,
        `MCPMESH_CALL_TIMEOUT_S` for anything else, never more than `MCPMESH_MAX_CALL_S`."""
        budget = self.tool_budgets.get(tool) if isinstance(tool, str) else None
        return min(budget if budget is not None else self.settings.call_timeout_s, self.settings.max_call_s)

    def required_scope(self, method: str, params: Mapping[str, Any]) -> str | None:
        """The scope a method needs; None for listing methods (any scope on this service will do)."""
        if method == "tools/call":
            name = params.get("name")
            return self.tool_scopes.get(name) if isinstance(name, str) else None
        if method in _LISTING:
            return None
        return scope_for(self.name, "read")

    async def handle(
        self, subject: str, data: bytes, headers: Mapping[str, str] | None, writer: ReplyWriter | None = None
    ) -> bytes:
        """Serve one JSON-RPC exchange from the bus; always returns a JSON-RPC reply body.
        `writer`: the request's reply inbox, for progress frames while the call runs."""
        reply, _status = await self.handle_with_status(subject, data, headers, writer)
        return reply

    async def handle_with_status(
        self, subject: str, data: bytes, headers: Mapping[str, str] | None, writer: ReplyWriter | None = None
    ) -> tuple[bytes, str]:
        """`handle`, plus the call's outcome: "ok" or an error code (as in the metrics)."""
        started = time.perf_counter()
        headers = headers or {}
        request_id = headers.get(h.REQUEST_ID) or uuid.uuid4().hex
        rpc_id: RequestId | None = None
        call: Call | None = None
        method = "?"
        tool: str | None = None
        status = "ok"
        reply: bytes
        with (
            bind_request(request_id=request_id, service=self.name, org_id="-"),
            tracer().start_as_current_span(
                f"{self.name} serve", context=extract_context(headers), kind=SpanKind.SERVER
            ) as span,
        ):
            try:
                try:
                    org_id = org_of_service_subject(subject)
                except InvalidIdentifier as exc:
                    raise MeshException(ErrorCode.INVALID_REQUEST, str(exc)) from None
                decoded = _decode(data)
                rpc_id = decoded.get("id")
                method = decoded["method"]
                params = decoded.get("params") or {}
                tool = params.get("name") if method == "tools/call" else None
                span.set_attribute("mcp.method", method)
                stamp = self.verify(headers.get(h.STAMP))
                if stamp.org_id != org_id:
                    raise MeshException(
                        ErrorCode.FORBIDDEN, "the stamp's org does not match the request subject"
                    )
                update_request(org_id=org_id)  # on every log line and span from here on
                span.set_attribute(ORG_ATTRIBUTE, org_id)
                required = self.required_scope(method, params)
                if required is None:
                    allowed = covers(stamp.scopes, scope_for(self.name, "read")) or covers(
                        stamp.scopes, scope_for(self.name, "write")
                    )
                    required = f"{self.name}:read or {self.name}:write"
                else:
                    allowed = covers(stamp.scopes, required)
                if not allowed:
                    raise MeshException(ErrorCode.FORBIDDEN, f"missing scope {required!r} for {method}")
                offered = self.tool_tiers.get(tool) if isinstance(tool, str) else None
                if offered is not None and stamp.tier not in offered:
                    raise MeshException(
                        ErrorCode.FORBIDDEN,
                        f"{self.qualified(str(tool))} is not available on the {stamp.tier!r} tier",
                    )
                _check_params(method, params)
                verdict = classify_inbound_request(decoded)
                if isinstance(verdict, InboundLadderRejection):
                    raise MCPError(verdict.code, verdict.message, verdict.data)
                call = Call(
                    service=self,
                    stamp=stamp,
                    token=headers.get(h.STAMP, ""),
                    request_id=request_id,
                    deadline=Deadline.from_header(headers.get(h.DEADLINE), self.time_budget(tool)),
                    bus=self.bus,
                    headers=headers,
                    writer=writer,
                    meta=meta if isinstance(meta := params.get("_meta"), dict) else {},
                )
                token = CURRENT_CALL.set(call)
                try:
                    with bind_request(tool=tool or method):
                        result = await self._serve(call, decoded, verdict, writer)
                finally:
                    CURRENT_CALL.reset(token)
                if result.get("isError") and call.outcome == "ok":
                    call.outcome = "tool_error"
                if call.outcome != "ok":
                    status = call.outcome
                reply = msgspec.json.encode({"jsonrpc": "2.0", "id": rpc_id, "result": result})
            except MeshException as exc:
                status = exc.error.code.value
                reply = _error_reply(rpc_id, exc.jsonrpc_code, exc.error.message, exc.error)
            except _BadMessage as exc:
                status = ErrorCode.INVALID_REQUEST.value
                reply = _error_reply(
                    rpc_id, exc.code, exc.message, MeshError(ErrorCode.INVALID_REQUEST, exc.message)
                )
            except Exception as exc:  # SDK errors map to JSON-RPC; anything else is a generic internal error
                error = modern_error_data(exc)
                status = _outcome_of(error.code, error.data)
                reply = _error_reply(rpc_id, error.code, error.message, None, error.data)
            latency_ms = (time.perf_counter() - started) * 1000
            if status != "ok":
                span.set_status(Status(StatusCode.ERROR, status))
            await self._account(call, method, tool, status, latency_ms, len(data), len(reply), request_id)
            return reply, status

    def refusal(self, data: bytes, overloaded: Overloaded) -> bytes:
        """The reply to a request refused at admission: JSON-RPC `unavailable` (the gateway
        answers 503 with Retry-After), built without decoding more than the request's id."""
        self.metrics.admission_refused.labels(overloaded.reason).inc()
        return self.error_reply(
            data, MeshException(ErrorCode.UNAVAILABLE, overloaded.message, retryable=True)
        )

    @staticmethod
    def error_reply(data: bytes, exc: MeshException) -> bytes:
        """A JSON-RPC error answering the request `data`, decoding no more than its id."""
        try:
            rpc_id = msgspec.json.decode(data, type=_RequestId).id
        except (msgspec.DecodeError, msgspec.ValidationError):
            rpc_id = None
        return _error_reply(rpc_id, exc.jsonrpc_code, exc.error.message, exc.error)

    async def _serve(
        self, call: Call, decoded: dict[str, Any], verdict: Any, writer: ReplyWriter | None
    ) -> dict[str, Any]:
        connection = Connection.from_envelope(
            verdict.protocol_version, verdict.client_info, verdict.client_capabilities
        )
        dctx = _BusDispatchContext(
            transport=TransportContext(kind="nats", can_send_request=False, headers=call.headers),
            request_id=decoded["id"],
            message_metadata=ServerMessageMetadata(request_context=call),
            progress_token=progress_token_from_params(decoded.get("params")),
            writer=writer,
        )
        try:  # fail_after raises TimeoutError as its block exits, so catch it outside
            with anyio.fail_after(max(call.deadline.remaining(), 0.001)) as scope:
                cancellable = self.running.add(
                    scope, call.org_id, call.stamp.sub, call.request_id, call.headers.get(h.CLIENT_REQUEST)
                )
                try:
                    return await serve_one(
                        self.mcp._lowlevel_server,
                        dctx,
                        decoded["method"],
                        decoded.get("params"),
                        connection=connection,
                        lifespan_state=None,
                    )
                finally:
                    self.running.discard(cancellable, scope)
        except TimeoutError:
            raise self._stopped_at_deadline(decoded) from None
        # The scope was cancelled before its deadline: a caller's cancel notice.
        raise MeshException(ErrorCode.CANCELLED, "the call was cancelled by its caller")

    def _stopped_at_deadline(self, decoded: Mapping[str, Any]) -> MeshException:
        """The TIMEOUT for a call cut off at its deadline: a write may have been partly applied."""
        tool = (decoded.get("params") or {}).get("name") if decoded["method"] == "tools/call" else None
        if not isinstance(tool, str) or tool in self.repeatable_tools:
            return MeshException(ErrorCode.TIMEOUT, "the call did not finish before its deadline")
        return MeshException(
            ErrorCode.TIMEOUT,
            f"{self.qualified(tool)} did not finish before its deadline and was stopped: it may have been "
            "applied; check the current state before retrying",
            retryable=False,
        )

    async def _account(
        self,
        call: Call | None,
        method: str,
        tool: str | None,
        status: str,
        latency_ms: float,
        bytes_in: int,
        bytes_out: int,
        request_id: str,
    ) -> None:
        self.stats["calls"] += 1
        self.stats["latency_ms_total"] += latency_ms
        if status != "ok":
            self.stats["errors"] += 1
        org_id = call.org_id if call else "-"
        usage = call.usage if call is not None else None
        self.metrics.observe_call(self.name, tool or method, org_id, status, latency_ms / 1000, usage)
        log.info("call", method=method, tool=tool, status=status, latency_ms=round(latency_ms, 2))
        if call is None or self.bus is None:
            return
        event = UsageEvent(
            event_id=uuid.uuid4().hex,
            ts=time.time(),
            org_id=call.org_id,
            key_id=call.stamp.sub,
            service=self.name,
            method=method,
            tool=tool,
            request_id=request_id,
            status=status,
            latency_ms=round(latency_ms, 3),
            bytes_in=bytes_in,
            bytes_out=bytes_out,
            llm_prompt_tokens=call.usage.get("prompt_tokens"),
            llm_completion_tokens=call.usage.get("completion_tokens"),
            llm_cost_usd=call.usage.get("cost_usd"),
            llm_cached_tokens=call.usage.get("cached_tokens"),
            llm_model=call.usage.get("model"),
            llm_billed_to=call.usage.get("billed_to"),
        )
        # No ack wait: the USAGE stream captures the subject; Nats-Msg-Id dedupes a redelivery.
        try:
            await self.bus.nc.publish(
                usage_subject(call.org_id, self.name),
                msgspec.json.encode(event),
                headers={"Nats-Msg-Id": event.event_id},
            )
        except Exception as exc:  # metering must never fail the call it measures
            log.warning("usage event not published", error=repr(exc))


#: Params a method needs with their JSON type: (name, type, required). A wrong one is refused
#: with a sentence naming it, rather than the SDK's bare "Invalid request parameters".
_PARAMS: Final[dict[str, tuple[tuple[str, type, bool], ...]]] = {
    "tools/call": (("name", str, True), ("arguments", dict, False)),
    "prompts/get": (("name", str, True), ("arguments", dict, False)),
    "resources/read": (("uri", str, True),),
}
_LIST_PARAMS: Final[tuple[tuple[str, type, bool], ...]] = (("cursor", str, False),)
_KIND_NAMES: Final[dict[type, str]] = {str: "a string", dict: "an object"}


class _RequestId(msgspec.Struct):
    id: str | int | None = None


class _BadMessage(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _decode(data: bytes) -> dict[str, Any]:
    try:
        decoded = msgspec.json.decode(data)
    except msgspec.DecodeError:
        raise _BadMessage(PARSE_ERROR, "request body is not valid JSON") from None
    if not isinstance(decoded, dict):
        raise _BadMessage(INVALID_REQUEST, "expected one JSON-RPC request object (batches are not supported)")
    if decoded.get("jsonrpc") != "2.0" or not isinstance(decoded.get("method"), str):
        raise _BadMessage(
            INVALID_REQUEST, "not a JSON-RPC 2.0 request: 'jsonrpc' must be \"2.0\" and 'method' a string"
        )
    if "id" not in decoded or not isinstance(decoded["id"], str | int) or isinstance(decoded["id"], bool):
        raise _BadMessage(INVALID_REQUEST, "a bus request needs an 'id' (string or integer)")
    params = decoded.get("params")
    if params is not None and not isinstance(params, dict):
        raise _BadMessage(INVALID_REQUEST, "'params' must be an object")
    return decoded


def _check_params(method: str, params: Mapping[str, Any]) -> None:
    for name, kind, required in _PARAMS.get(method, _LIST_PARAMS):
        value = params.get(name)
        if value is None and not required:
            continue
        if not isinstance(value, kind):
            raise _BadMessage(INVALID_PARAMS, f"{method} needs params.{name} to be {_KIND_NAMES[kind]}")
    arguments = params.get("arguments")
    if method == "prompts/get" and arguments and not all(isinstance(v, str) for v in arguments.values()):
        raise _BadMessage(INVALID_PARAMS, "prompts/get params.arguments must map argument names to strings")


def _outcome_of(code: int, data: Any) -> str:
    """The mesh error code of a JSON-RPC error: its MeshError's, else internal or invalid_request."""
    if isinstance(data, dict) and data.get("code") in tuple(ErrorCode):
        return str(data["code"])
    return ErrorCode.INTERNAL.value if code == INTERNAL_ERROR else ErrorCode.INVALID_REQUEST.value


def _error_reply(
    rpc_id: RequestId | None, code: int, message: str, mesh: MeshError | None, data: Any = None
) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if mesh is not None:
        error["data"] = msgspec.to_builtins(mesh)
    elif data not in (None, ""):
        error["data"] = data
    return msgspec.json.encode({"jsonrpc": "2.0", "id": rpc_id, "error": error})


_SHOWN_MAX = 200


def _refusal(code: ErrorCode, message: str, **extra: Any) -> MCPError:
    """A JSON-RPC error for a request the caller got wrong: -32602 (invalid params), as MCP has it
    for unknown prompts and resources, with the mesh's `MeshError` (`extra` as its details) as `data`."""
    return MCPError(INVALID_PARAMS, message, msgspec.to_builtins(MeshError(code, message, details=extra)))


def _shown(value: str) -> str:
    return repr(value) if len(value) <= _SHOWN_MAX else repr(value[: _SHOWN_MAX - 3] + "...")


def _validation_cause(exc: BaseException) -> ValidationError | None:
    """The ValidationError a failure was raised from, if any (the SDK wraps it twice for prompts)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ValidationError):
            return seen
        seen = seen.__cause__
    return None


def _clean_failures(fn: F, qualified: str) -> F:
    """Tool failures reach the client as `isError` results carrying the `MeshError` (proto's
    `tool_error_result`): a MeshException's code, message, retryability and details as raised
    (also one a downstream service raised, see `Call.call_tool`), or a generic `internal` line
    for anything unexpected (logged here with its traceback, never sent)."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except MeshException as exc:
            _mark_outcome(exc.error.code.value)
            return _failed(exc.error)
        except (MCPError, ToolError):
            raise
        except Exception:
            _mark_outcome(ErrorCode.INTERNAL.value)
            log.exception("tool failed", tool=qualified)
            return _failed(
                MeshError(ErrorCode.INTERNAL, f"internal error in {qualified}: the failure was logged")
            )

    return wrapper  # type: ignore[return-value]


def _failed(error: MeshError) -> CallToolResult:
    return CallToolResult.model_validate(tool_error_result(error))


def _mark_outcome(outcome: str) -> None:
    call = CURRENT_CALL.get()
    if call is not None:
        call.outcome = outcome
