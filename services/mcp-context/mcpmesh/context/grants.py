"""Share documents and their checks, at the owner's side, at access time.

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
from typing import Any, Final

from mcpmesh.context.app import ContextApp
from mcpmesh.context.clock import iso, to_millis
from mcpmesh.context.inputs import Access
from mcpmesh.proto.ids import InvalidIdentifier, validate_org_id
from mcpmesh.store import TenantStore

#: How many reshares deep a chain may go.
MAX_CHAIN: Final = 8


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
        if not self.require_attribution:
            return None
        return {
            "owner_org": self.owner,
            "share_id": self.share_id,
            "notice": f"Shared by {self.owner}; credit {self.owner} when reusing this content.",
        }


def _covers(share: Mapping[str, Any], ctx_id: str | None, namespace: str | None) -> bool:
    if share.get("target") == "context":
        return ctx_id is not None and share.get("ctx_id") == ctx_id
    return (
        share.get("target") == "namespace" and namespace is not None and share.get("namespace") == namespace
    )


def expired(share: Mapping[str, Any], now: datetime) -> bool:
    expires = share.get("expires_at")
    return expires is not None and to_millis(expires) <= now


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
    namespace, or None when it is missing, revoked, expired, for someone else, for
    another target, or a reshare whose chain no longer holds. `owner` is the store a grant
    check is given (see mcpmesh.service.grants)."""
    shares = await owner.collection("shares")
    share = await shares.find_one({"_id": share_id})
    if share is None or share.get("grantee") != grantee or share.get("owner") != owner.org_id:
        return None
    access: Access = "write"
    expires_at: datetime | None = None
    attribution = False
    current: Mapping[str, Any] | None = share
    for depth in range(MAX_CHAIN + 1):
        if current is None:
            break
        if expired(current, now) or not _covers(current, ctx_id, namespace):
            return None
        if depth > 0 and not current.get("allow_resharing"):
            return None
        if current.get("access") == "read":
            access = "read"
        if current.get("expires_at") is not None:
            expiry = to_millis(current["expires_at"])
            expires_at = expiry if expires_at is None else min(expires_at, expiry)
        attribution = attribution or bool(current.get("require_attribution"))
        parent_id = current.get("parent")
        if parent_id is None:
            if current.get("granted_by") != owner.org_id:
                return None
            current = None
            break
        parent = await shares.find_one({"_id": parent_id})
        if parent is None or parent.get("grantee") != current.get("granted_by"):
            return None
        current = parent
    if current is not None:  # chain too deep
        return None
    return Grant(
        share_id=share["_id"],
        owner=owner.org_id,
        target=share["target"],
        access=access,
        expires_at=expires_at,
        allow_resharing=bool(share.get("allow_resharing")),
        require_attribution=attribution,
        ctx_id=share.get("ctx_id"),
        namespace=share.get("namespace"),
    )


def pointer_owner(pointer: Mapping[str, Any], grantee: str) -> str | None:
    """The owner a grant pointer names, if it is a valid org other than the grantee."""
    try:
        owner = validate_org_id(pointer.get("owner"))
    except InvalidIdentifier:
        return None
    return owner if owner != grantee else None


def better(current: Grant | None, candidate: Grant) -> Grant:
    """Prefer write over read, then no attribution requirement over one."""
    if current is None:
        return candidate
    rank = {"read": 0, "write": 1}
    if rank[candidate.access] != rank[current.access]:
        return candidate if rank[candidate.access] > rank[current.access] else current
    if current.require_attribution and not candidate.require_attribution:
        return candidate
    return current


async def revoke_cascade(app: ContextApp, owner: TenantStore, share_ids: list[str]) -> list[str]:
    """Delete shares and every reshare made from them, share first then the grantee's pointer
    (so access stops at once even if a pointer delete fails: a dangling pointer grants nothing)."""
    shares = await owner.collection("shares")
    revoked: list[str] = []
    queue = list(share_ids)
    while queue:
        share_id = queue.pop()
        doc = await shares.find_one_and_delete({"_id": share_id})
        if doc is None:
            continue
        revoked.append(share_id)
        grants = await app.service.grant_index(validate_org_id(doc["grantee"]))
        await grants.delete_one({"_id": share_id, "owner": owner.org_id})
        queue.extend([child["_id"] async for child in shares.find({"parent": share_id}, {"_id": 1})])
    return revoked


async def drop_context_shares(app: ContextApp, owner: TenantStore, ctx_id: str) -> None:
    shares = await owner.collection("shares")
    ids = [doc["_id"] async for doc in shares.find({"ctx_id": ctx_id}, {"_id": 1})]
    await revoke_cascade(app, owner, ids)


def share_view(share: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    view: dict[str, Any] = {
        "share_id": share["_id"],
        "target": share["target"],
        "grantee": share["grantee"],
        "access": share["access"],
        "expires_at": iso(share.get("expires_at")),
        "allow_resharing": bool(share.get("allow_resharing")),
        "require_attribution": bool(share.get("require_attribution")),
        "granted_by": share.get("granted_by"),
        "created_at": iso(share.get("created_at")),
        "expired": expired(share, now),
    }
    view["ctx_id" if share["target"] == "context" else "namespace"] = share.get(
        "ctx_id" if share["target"] == "context" else "namespace"
    )
    if share.get("parent"):
        view["reshared_from"] = share["parent"]
    return view
