"""Context shares: their records and checks (the model and the chain walk are
`mcpmesh.service.shares`, shared with mcp-rag), at the owner's side, at access time.

A share lives in the OWNER's `<owner>__shares`:

    {_id: "shr-...", owner, target: "context" | "namespace", ctx_id | namespace, grantee,
     access: "read" | "write", expires_at | None, allow_resharing, require_attribution,
     granted_by: owner or the resharing org, parent: share id the resharer held | None, created_at}

and the grantee gets only a pointer in `<grantee>__grants` ({_id: same id, owner, target,
ctx_id | namespace}) so that, knowing just a context id, it can find the owner. The
pointer is never trusted: every access re-reads the share (and its parents, for
reshares) at the owner's side and checks grantee, target, expiry and level, so an
expired or revoked grant allows nothing from the next call on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mcpmesh.context.app import ContextApp
from mcpmesh.context.inputs import Access
from mcpmesh.service import shares as shares_lib
from mcpmesh.service.shares import better, check_chain, expired, pointer_owner
from mcpmesh.store import TenantStore

__all__ = ["Grant", "better", "check_share", "expired", "pointer_owner", "revoke_cascade", "share_view"]


@dataclass(frozen=True)
class Grant:
    """What a valid share (with its whole chain) gives the grantee now."""

    share_id: str
    owner: str
    target: str
    access: Access
    expires_at: datetime | None
    allow_resharing: bool
    require_attribution: bool
    ctx_id: str | None = None
    namespace: str | None = None

    def attribution(self) -> dict[str, Any] | None:
        return shares_lib.attribution(self.owner, self.share_id) if self.require_attribution else None


def _covers(share: Mapping[str, Any], ctx_id: str | None, namespace: str | None) -> bool:
    if share.get("target") == "context":
        return ctx_id is not None and share.get("ctx_id") == ctx_id
    return (
        share.get("target") == "namespace" and namespace is not None and share.get("namespace") == namespace
    )


async def check_share(
    owner: TenantStore,
    share_id: str,
    grantee: str,
    *,
    now: datetime,
    ctx_id: str | None = None,
    namespace: str | None = None,
) -> Grant | None:
    """The grant `share_id` gives `grantee` over a context (ctx_id + its namespace) or a
    namespace, or None when it is missing, revoked, expired, for someone else, for another
    target, or a reshare whose chain no longer holds (`mcpmesh.service.shares.check_chain`).
    `owner` is the store a grant check is given (see mcpmesh.service.grants)."""
    chain = await check_chain(
        await owner.collection("shares"),
        share_id,
        grantee,
        owner.org_id,
        now=now,
        covers=lambda share: _covers(share, ctx_id, namespace),
    )
    if chain is None:
        return None
    share = chain.share
    return Grant(
        share_id=share["_id"],
        owner=owner.org_id,
        target=share["target"],
        access=chain.access,
        expires_at=chain.expires_at,
        allow_resharing=bool(share.get("allow_resharing")),
        require_attribution=chain.require_attribution,
        ctx_id=share.get("ctx_id"),
        namespace=share.get("namespace"),
    )


async def revoke_cascade(app: ContextApp, owner: TenantStore, share_ids: list[str]) -> list[str]:
    """Delete shares and every reshare made from them (`mcpmesh.service.shares.revoke_cascade`)."""
    return await shares_lib.revoke_cascade(app.service, owner, "shares", share_ids)


async def drop_context_shares(app: ContextApp, owner: TenantStore, ctx_id: str) -> None:
    shares = await owner.collection("shares")
    ids = [doc["_id"] async for doc in shares.find({"ctx_id": ctx_id}, {"_id": 1})]
    await revoke_cascade(app, owner, ids)


def share_view(share: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    key = "ctx_id" if share["target"] == "context" else "namespace"
    return shares_lib.share_view(share, now, target=share["target"], **{key: share.get(key)})
