"""What a tool handler gets: the tenant, its data handles and a stamp-carrying bus client."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

import msgspec
from mcp.shared.dispatcher import ProgressFnT as OnProgress
from mcp.shared.jsonrpc_dispatcher import progress_token_from_params
from mcp_types import LOG_LEVEL_META_KEY, ProgressToken
from nats.js.errors import BucketNotFoundError, KeyNotFoundError

from mcpmesh.bus import Bus, Deadline
from mcpmesh.bus.frames import OnProgress as FrameHandler
from mcpmesh.bus.frames import ReplyWriter
from mcpmesh.bus.mcp import exchange, request_body, result_of
from mcpmesh.proto.errors import ErrorCode, MeshException, error_of_tool_result
from mcpmesh.proto.tiers import ORG_SETTINGS_BUCKET, OrgSettings, tier_defaults
from mcpmesh.service.audit import record_audit
from mcpmesh.tenancy.stamp import Stamp

if TYPE_CHECKING:
    from mcpmesh.secrets import TenantSecrets
    from mcpmesh.service.grants import GrantCheck, Shared
    from mcpmesh.service.server import MeshService
    from mcpmesh.store import TenantStore
    from mcpmesh.vectors import TenantVectors

S = TypeVar("S")
G = TypeVar("G")

#: `on_progress=RELAY`: a callee's progress goes on to this request's caller (see `Call.request`).
Relay = Literal["relay"]
RELAY: Final[Relay] = "relay"


@dataclass(frozen=True)
class Hop:
    """What a request to another service carries: as whom, until when, as part of what."""

    bus: Bus | None
    org_id: str
    stamp: str
    deadline: Deadline
    request_id: str
    max_result_bytes: int


#: Where a callee's notification (a decoded JSON-RPC notification) goes on `RELAY`.
Forward = Callable[[dict[str, Any]], Awaitable[None]]


class ServiceCaller:
    """Requests to other services as one org: a served request (`Call`) and a job (`JobContext`)."""

    async def _hop(self) -> Hop:
        raise NotImplementedError

    def _forward(self) -> Forward | None:
        """Where a callee's notifications go on `RELAY`; None: nowhere (the callee is asked for none)."""
        return None

    def _relayed_meta(self) -> dict[str, Any]:
        """`_meta` entries of this request passed on to a callee whose notifications are relayed."""
        return {}

    async def call_tool(
        self,
        service: str,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        on_progress: OnProgress | Relay | None = RELAY,
    ) -> dict[str, Any]:
        """Call another service's tool as this same tenant (stamp, request id, trace, deadline carried).

        A failed tool raises its MeshException as the callee reported it (code, message, retryable,
        details): raised on from this tool, it reaches the client unchanged, however many hops away.
        `on_progress`: see `request`.
        """
        params = {"name": tool, "arguments": dict(arguments)}
        result = await self.request(service, "tools/call", params, on_progress=on_progress)
        error = error_of_tool_result(result)
        if error is not None:
            raise MeshException.of(error)
        return result

    async def request(
        self,
        service: str,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        on_progress: OnProgress | Relay | None = RELAY,
    ) -> dict[str, Any]:
        """One JSON-RPC request to another service as this tenant; its `result` (a JSON-RPC error
        raises its MeshException). What the callee reports while it runs (progress, log lines):
        `RELAY` (default) sends it on to this request's caller as this request's own, when the
        caller asked for a stream (else nothing is asked of the callee); a function
        `(progress, total, message)` gets the callee's progress instead (log lines are still
        relayed); None asks for none."""
        hop = await self._hop()
        if hop.bus is None:
            raise MeshException(ErrorCode.UNAVAILABLE, f"no bus in this run: cannot reach {service}")
        rpc_id = uuid.uuid4().hex[:12]
        frames = _progress_frames(on_progress, self._forward())
        if frames is not None:
            params = dict(params or {})
            meta = {**self._relayed_meta(), **(params.get("_meta") or {}), "progressToken": rpc_id}
            params["_meta"] = meta
        try:
            reply = await exchange(
                hop.bus,
                org_id=hop.org_id,
                service=service,
                body=request_body(method, params, request_id=rpc_id),
                stamp=hop.stamp,
                deadline=hop.deadline,
                request_id=hop.request_id,
                max_result_bytes=hop.max_result_bytes,
                on_progress=frames,
            )
        except MeshException as exc:  # the bus's own failure: say which service
            raise _not_answered(service, method, exc) from None
        return result_of(reply)


def _progress_frames(on_progress: OnProgress | Relay | None, forward: Forward | None) -> FrameHandler | None:
    """What handles a callee's progress frames; None: ask the callee for none."""
    handler = on_progress if callable(on_progress) else None
    if on_progress is None or (handler is None and forward is None):
        return None

    async def frames(raw: bytes) -> None:
        try:
            message = msgspec.json.decode(raw)
            params = message.get("params")
        except (msgspec.DecodeError, AttributeError):
            return  # not a notification: nothing to pass on
        if (
            handler is not None
            and message.get("method") == "notifications/progress"
            and isinstance(params, dict)
        ):
            await handler(params.get("progress", 0), params.get("total"), params.get("message"))
        elif forward is not None:
            await forward(message)

    return frames


@dataclass
class Call(ServiceCaller):
    """One served request. Reach it from a tool with `call_of(ctx)`."""

    service: MeshService
    stamp: Stamp
    token: str  # the raw stamp, carried forward downstream
    request_id: str
    deadline: Deadline
    bus: Bus | None
    headers: Mapping[str, str] = field(default_factory=dict)
    outcome: str = "ok"  # set by the kit when the tool fails; reported in the usage event
    usage: dict[str, Any] = field(default_factory=dict)  # e.g. llm tokens and cost, for metering
    writer: ReplyWriter | None = None  # this request's reply inbox (progress frames), on the bus
    meta: Mapping[str, Any] = field(default_factory=dict)  # the request's `params._meta`

    @property
    def org_id(self) -> str:
        return self.stamp.org_id

    @property
    def tier(self) -> str:
        return self.stamp.tier

    @property
    def key_tags(self) -> frozenset[str]:
        """The calling API key's tags (its scopes: `stamp.scopes`); empty for a key without
        tags. A call to another service carries them, as it carries the stamp."""
        return frozenset(self.stamp.key_tags)

    @property
    def store(self) -> TenantStore:
        """This org's MongoDB collections (and only this org's)."""
        return self.service.store.for_tenant(self.org_id)

    async def shared(self, owner_org: str, check: GrantCheck[G]) -> Shared[G] | None:
        """Another org's store, when `check` (given that org's store, to read its grant records)
        finds a grant for this caller now; else None. See `mcpmesh.service.grants`."""
        from mcpmesh.service.grants import shared_for

        return await shared_for(self.service, self.org_id, owner_org, check)

    def state(self, kind: type[S]) -> S:
        """The service's state, as its lifespan yielded it (`MeshService(lifespan=...)`)."""
        return self.service.state(kind)

    async def audit(
        self,
        action: str,
        target: str | None,
        outcome: str = "ok",
        detail: Mapping[str, str] | None = None,
        *,
        owner_org: str | None = None,
    ) -> None:
        """Record `<service>.<action>` on `target` by this caller in the platform audit log: the
        caller's org's, or `owner_org`'s when the caller acted on that org's data through a grant."""
        on_behalf = owner_org is not None and owner_org != self.org_id
        await record_audit(
            self.bus,
            service=self.service.name,
            org_id=owner_org if owner_org is not None else self.org_id,
            actor=self.stamp.sub,
            request_id=self.request_id,
            action=action,
            target=target,
            outcome=outcome,
            detail={**(detail or {}), "caller_org": self.org_id} if on_behalf else detail,
        )

    @property
    def vectors(self) -> TenantVectors:
        """This org's Qdrant collections (and only this org's)."""
        return self.service.vectors.for_tenant(self.org_id)

    @property
    def secrets(self) -> TenantSecrets:
        """This org's secrets (and only this org's), on a service declared with `secrets=True`."""
        from mcpmesh.service.vault import vault_of

        return vault_of(self.service, self.store)

    async def org_settings(self) -> OrgSettings:
        """The org's settings as the gateway last published them, else its tier's defaults."""
        return await self.service.org_settings(self.org_id, self.tier)

    async def _hop(self) -> Hop:
        return Hop(
            self.bus,
            self.org_id,
            self.token,
            self.deadline,
            self.request_id,
            self.service.settings.max_result_bytes,
        )

    @property
    def progress_token(self) -> ProgressToken | None:
        """The caller's `_meta.progressToken`, if any."""
        return progress_token_from_params({"_meta": self.meta})

    @property
    def streaming(self) -> bool:
        """Whether this request's caller relays progress (asked for a stream, with a token)."""
        return self.writer is not None and self.writer.streaming and self.progress_token is not None

    def _relayed_meta(self) -> dict[str, Any]:
        """The caller asked for log lines (partial output): so is the callee, when they are relayed."""
        level = self.meta.get(LOG_LEVEL_META_KEY)
        return {LOG_LEVEL_META_KEY: level} if level is not None and self.streaming else {}

    def _forward(self) -> Forward | None:
        """A callee's notifications go on to this request's caller as this request's own (its
        progress token), within this request's frame budget; when the caller streams."""
        writer = self.writer
        if writer is None or not self.streaming:
            return None

        async def forward(message: dict[str, Any]) -> None:
            params = message.get("params")
            if message.get("method") == "notifications/progress" and isinstance(params, dict):
                message["params"] = {**params, "progressToken": self.progress_token}
            await writer.progress(msgspec.json.encode(message))

        return forward


def _not_answered(service: str, method: str, exc: MeshException) -> MeshException:
    """A downstream request the bus could not complete, naming the service. Unanswered in time,
    a tool call may have run there (its annotations are not known here): not retryable."""
    error = exc.error
    retryable = error.retryable
    if error.code is ErrorCode.UNAVAILABLE:
        message = f"service {service!r} is unavailable (no replica took the request): retry later"
    elif error.code is ErrorCode.TIMEOUT and method == "tools/call":
        message = f"service {service!r} did not answer before the deadline: it may have run the call"
        retryable = False
    elif error.code is ErrorCode.TIMEOUT:
        message = f"service {service!r} did not answer before the deadline"
    else:
        return exc
    return MeshException(error.code, message, retryable=retryable, details={"service": service})


#: The Call being served in this task (set by the kit around each exchange).
CURRENT_CALL: ContextVar[Call | None] = ContextVar("mcpmesh_call", default=None)


def call_of(ctx: Any = None) -> Call:
    """The Call being served: from a tool's SDK `Context` when given, else the current task's."""
    request = getattr(getattr(ctx, "request_context", None), "request", None) if ctx is not None else None
    if isinstance(request, Call):
        return request
    current = CURRENT_CALL.get()
    if current is not None:
        return current
    raise MeshException(ErrorCode.INTERNAL, "no tenant context for this request")


class SettingsCache:
    """Org settings from NATS KV, cached briefly so a hot path costs no round trip."""

    def __init__(self, ttl_s: float = 2.0) -> None:
        self.ttl_s = ttl_s
        self._cache: dict[tuple[str, str], tuple[float, OrgSettings]] = {}

    async def get(self, bus: Bus | None, org_id: str, tier: str) -> OrgSettings:
        hit = self._cache.get((org_id, tier))
        now = time.monotonic()
        if hit and now - hit[0] < self.ttl_s:
            return hit[1]
        settings = tier_defaults(tier)
        if bus is not None:
            try:  # the gateway owns the bucket: a service only reads it
                kv = await bus.kv(ORG_SETTINGS_BUCKET, create=False)
                entry = await kv.get(org_id)
                if entry.value:
                    settings = msgspec.json.decode(entry.value, type=OrgSettings)
            except (KeyNotFoundError, BucketNotFoundError):
                pass
        self._cache[(org_id, tier)] = (now, settings)
        return settings
