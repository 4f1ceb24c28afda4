"""What a tool handler gets: the tenant, its data handles and a stamp-carrying bus client."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from nats.js.errors import BucketNotFoundError, KeyNotFoundError

from mcpmesh.bus import Bus, Deadline
from mcpmesh.bus.mcp import exchange, request_body, result_of
from mcpmesh.proto.errors import ErrorCode, MeshException, error_of_tool_result
from mcpmesh.proto.tiers import ORG_SETTINGS_BUCKET, OrgSettings, tier_defaults
from mcpmesh.tenancy.stamp import Stamp

if TYPE_CHECKING:
    from mcpmesh.secrets import TenantSecrets
    from mcpmesh.service.grants import GrantCheck, Shared
    from mcpmesh.service.server import MeshService
    from mcpmesh.store import TenantStore
    from mcpmesh.vectors import TenantVectors

S = TypeVar("S")
G = TypeVar("G")


@dataclass
class Call:
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

    @property
    def org_id(self) -> str:
        return self.stamp.org_id

    @property
    def tier(self) -> str:
        return self.stamp.tier

    @property
    def store(self) -> TenantStore:
        """This org's MongoDB collections (and only this org's)."""
        return self.service.store.for_tenant(self.org_id)

    async def shared(self, owner_org: str, check: GrantCheck[G]) -> Shared[G] | None:
        """Another org's store, when `check` (given that org's store, to read its grant records)
        finds a grant for this caller now; else None. See `mcpmesh.service.grants`."""
        from mcpmesh.service.grants import reach_shared

        return await reach_shared(self.service.store, self.org_id, owner_org, check)

    def state(self, kind: type[S]) -> S:
        """The service's state, as its lifespan yielded it (`MeshService(lifespan=...)`)."""
        return self.service.state(kind)

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

    async def call_tool(self, service: str, tool: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Call another service's tool as this same tenant (stamp, request id, trace, deadline carried).

        A failed tool raises its MeshException as the callee reported it (code, message, retryable,
        details): raised on from this tool, it reaches the client unchanged, however many hops away.
        """
        result = await self.request(service, "tools/call", {"name": tool, "arguments": dict(arguments)})
        error = error_of_tool_result(result)
        if error is not None:
            raise MeshException.of(error)
        return result

    async def request(
        self, service: str, method: str, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        if self.bus is None:
            raise MeshException(ErrorCode.UNAVAILABLE, f"no bus in this run: cannot reach {service}")
        reply = await exchange(
            self.bus,
            org_id=self.org_id,
            service=service,
            body=request_body(method, params, request_id=uuid.uuid4().hex[:12]),
            stamp=self.token,
            deadline=self.deadline,
            request_id=self.request_id,
            max_result_bytes=self.service.settings.max_result_bytes,
        )
        return result_of(reply)


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
