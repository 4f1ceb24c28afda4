"""Events written to JetStream: usage per call, audit per admin action and key use."""

from __future__ import annotations

from typing import Any

import msgspec

from mcpmesh.proto.errors import MeshError


class UsageEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One served call. Published on `usage.<org>.<service>`."""

    event_id: str  # idempotency key for the roll-up writer (JetStream Nats-Msg-Id)
    ts: float  # unix seconds
    org_id: str
    key_id: str  # `sub` of the stamp
    service: str
    method: str  # JSON-RPC method, e.g. tools/call
    tool: str | None = None
    request_id: str
    status: str  # "ok" or an ErrorCode value
    latency_ms: float
    bytes_in: int = 0
    bytes_out: int = 0
    llm_prompt_tokens: int | None = None
    llm_completion_tokens: int | None = None
    llm_cost_usd: float | None = None
    llm_cached_tokens: int | None = None  # prompt tokens the provider served from its cache
    llm_model: str | None = None  # `<provider>/<model>` that served the call
    llm_billed_to: str | None = None  # "system" (the mesh pays the provider) or "org" (its own key)


class AuditEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Who did what, when, with what outcome. Published on `audit.<org>.<source>`."""

    event_id: str
    ts: float
    org_id: str
    actor: str  # key id, or "admin"
    action: str  # e.g. "key.create", "tools/call context.create"
    target: str | None = None
    outcome: str  # "ok" or an ErrorCode value
    request_id: str | None = None
    detail: dict[str, str] = msgspec.field(default_factory=dict)
    #: The component that recorded it (a service name, or "gateway"); must be the `<source>`
    #: of its subject, which only that component's NATS user may publish on.
    source: str = "gateway"


class KeyEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Broadcast on `control.keys` so every gateway replica drops or refreshes a key."""

    key_id: str
    org_id: str
    action: str  # "revoked" | "suspended" | "rotated" | "updated" | "org_suspended"
    ts: float


class TenantCommand(msgspec.Struct, frozen=True, kw_only=True):
    """Request on `control.tenants.<delete|export>.<service>`."""

    org_id: str
    #: EdDSA JWT signed with the gateway's stamp key, bound to action, org and service
    #: (`mcpmesh.tenancy.commands`); a service refuses a command without a valid one.
    authorization: str = ""


class TenantDataReply(msgspec.Struct, frozen=True, kw_only=True):
    """A service's answer: what it dropped, or everything it holds for the org."""

    service: str
    org_id: str
    dropped: list[str] = msgspec.field(default_factory=list)  # collection names
    export: dict[str, list[dict[str, Any]]] | None = None  # kind (or "vectors:<kb>") -> documents
    error: MeshError | None = None
