"""Shares one org gives another on some of its data: the records and their checks, for any
service (mcp-context shares contexts and namespaces, mcp-rag knowledge bases).

A share lives in the OWNER's store (a `shares`-like kind):

    {_id, owner, grantee, access: "read" | "write", expires_at | None, allow_resharing,
     require_attribution, granted_by: owner or the resharing org, parent: share id | None,
     created_at, ...the service's target fields}

and the grantee gets only a pointer in its grant index (`MeshService(grant_index=...)`). The
pointer is never trusted: every access walks the share and its parents at the owner's side
(`check_chain`, inside a `call.shared` check), so an expired or revoked grant allows nothing
from the next call on. A reshare can only narrow: read stays read, its expiry is at most its
parent's, attribution once required stays required (`narrowed`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, TypeVar

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.proto.ids import InvalidIdentifier, validate_org_id
from mcpmesh.store import Collection, TenantStore

if TYPE_CHECKING:
    from mcpmesh.service.server import MeshService

Access = Literal["read", "write"]
#: How many reshares deep a chain may go.
MAX_CHAIN: Final = 8


@dataclass(frozen=True)
class Chain:
    """What a share gives its grantee now, its whole chain of reshares considered."""

    share: Mapping[str, Any]
    access: Access
    expires_at: datetime | None
    require_attribution: bool


class Ranked(Protocol):
    @property
    def access(self) -> Access: ...

    @property
    def require_attribution(self) -> bool: ...


R = TypeVar("R", bound=Ranked)


def aware(value: datetime) -> datetime:
    """A stored time as timezone-aware UTC, at millisecond precision (as BSON keeps it)."""
    value = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def expired(share: Mapping[str, Any], now: datetime) -> bool:
    expires = share.get("expires_at")
    return expires is not None and aware(expires) <= now


async def check_chain(
    shares: Collection,
    share_id: str,
    grantee: str,
    owner: str,
    *,
    now: datetime,
    covers: Callable[[Mapping[str, Any]], bool],
) -> Chain | None:
    """The access share `share_id` (in the owner's `shares`) gives `grantee` over what `covers`
    accepts, or None when it is missing, revoked, expired, for someone else, for another
    target, or a reshare whose chain no longer holds (a link expired, revoked, not reshareable,
    or not rooted in the owner)."""
    share = await shares.find_one({"_id": share_id})
    if share is None or share.get("grantee") != grantee or share.get("owner") != owner:
        return None
    access: Access = "write"
    expires_at: datetime | None = None
    attribution = False
    current: Mapping[str, Any] | None = share
    for depth in range(MAX_CHAIN + 1):
        if current is None:
            break
        if expired(current, now) or not covers(current):
            return None
        if depth > 0 and not current.get("allow_resharing"):
            return None
        if current.get("access") == "read":
            access = "read"
        if current.get("expires_at") is not None:
            expiry = aware(current["expires_at"])
            expires_at = expiry if expires_at is None else min(expires_at, expiry)
        attribution = attribution or bool(current.get("require_attribution"))
        parent_id = current.get("parent")
        if parent_id is None:
            if current.get("granted_by") != owner:
                return None
            current = None
            break
        parent = await shares.find_one({"_id": parent_id})
        if parent is None or parent.get("grantee") != current.get("granted_by"):
            return None
        current = parent
    if current is not None:  # chain too deep
        return None
    return Chain(share=share, access=access, expires_at=expires_at, require_attribution=attribution)


def better(current: R | None, candidate: R) -> R:
    """Prefer write over read, then no attribution requirement over one."""
    if current is None:
        return candidate
    rank = {"read": 0, "write": 1}
    if rank[candidate.access] != rank[current.access]:
        return candidate if rank[candidate.access] > rank[current.access] else current
    if current.require_attribution and not candidate.require_attribution:
        return candidate
    return current


def pointer_owner(pointer: Mapping[str, Any], grantee: str) -> str | None:
    """The owner a grant pointer names, if it is a valid org other than the grantee."""
    try:
        owner = validate_org_id(pointer.get("owner"))
    except InvalidIdentifier:
        return None
    return owner if owner != grantee else None


def narrowed(
    parent: Chain | None, level: Access, expires: datetime | None, require_attribution: bool, *, what: str
) -> tuple[datetime | None, bool]:
    """(expiry, require_attribution) of a reshare made with `parent`: refused when it would give
    more than the resharer holds (write from read, a later expiry)."""
    if parent is None:
        return expires, require_attribution
    if level == "write" and parent.access != "write":
        raise MeshException(
            ErrorCode.FORBIDDEN, "your org has read access only: it cannot grant write access"
        )
    if parent.expires_at is not None:
        if expires is None:
            expires = parent.expires_at
        elif expires > parent.expires_at:
            raise MeshException(
                ErrorCode.INVALID_REQUEST,
                f"expires_at cannot be later than your own grant's expiry on this {what} "
                f"({parent.expires_at.isoformat().replace('+00:00', 'Z')})",
            )
    return expires, require_attribution or parent.require_attribution


async def revoke_cascade(
    service: MeshService, owner: TenantStore, kind: str, share_ids: list[str]
) -> list[str]:
    """Delete shares (of store kind `kind`) and every reshare made from them: share first, then the
    grantee's pointer (a dangling pointer grants nothing, so access stops at once)."""
    shares = await owner.collection(kind)
    revoked: list[str] = []
    queue = list(share_ids)
    while queue:
        share_id = queue.pop()
        doc = await shares.find_one_and_delete({"_id": share_id})
        if doc is None:
            continue
        revoked.append(share_id)
        grants = await service.grant_index(validate_org_id(doc["grantee"]))
        await grants.delete_one({"_id": share_id, "owner": owner.org_id})
        queue.extend([child["_id"] async for child in shares.find({"parent": share_id}, {"_id": 1})])
    return revoked


async def file_pointer(
    service: MeshService,
    shares: Collection,
    share_id: str,
    grantee: str,
    pointer: Mapping[str, Any],
    *,
    created: bool,
) -> None:
    """File the grantee's pointer to a share just written; if that fails, a share `created` by
    this call is removed again (no share the grantee could not find)."""
    grants = await service.grant_index(grantee)  # only the pointer is written there
    try:
        await grants.replace_one({"_id": share_id}, {"_id": share_id, **pointer}, upsert=True)
    except Exception:
        if created:
            await shares.delete_one({"_id": share_id})
        raise


def iso(value: datetime | None) -> str | None:
    """ISO 8601 with a `Z` and milliseconds, e.g. 2026-01-02T03:04:05.678Z."""
    if value is None:
        return None
    value = aware(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def share_view(share: Mapping[str, Any], now: datetime, **target: Any) -> dict[str, Any]:
    """A share as its owner lists it; `target` names what it is on (service fields)."""
    view: dict[str, Any] = {
        "share_id": share["_id"],
        **target,
        "grantee": share["grantee"],
        "access": share["access"],
        "expires_at": iso(share.get("expires_at")),
        "allow_resharing": bool(share.get("allow_resharing")),
        "require_attribution": bool(share.get("require_attribution")),
        "granted_by": share.get("granted_by"),
        "created_at": iso(share.get("created_at")),
        "expired": expired(share, now),
    }
    if share.get("parent"):
        view["reshared_from"] = share["parent"]
    return view


def attribution(owner: str, share_id: str) -> dict[str, Any]:
    """What a grantee shows when a share requires attribution."""
    return {
        "owner_org": owner,
        "share_id": share_id,
        "notice": f"Shared by {owner}; credit {owner} when reusing this content.",
    }
