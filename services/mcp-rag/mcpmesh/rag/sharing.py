"""Shared knowledge bases: an owner grants another org read or write access to one kb, with an
expiry, resharing and attribution, with the same records, checks and semantics as mcp-context's
shares (`mcpmesh.service.shares`).

A share is `<owner>__shares` {_id: "kbs-...", owner, kb, grantee, access, expires_at,
allow_resharing, require_attribution, granted_by, parent, created_at}; the grantee holds a
pointer {_id, owner, kb} in `<grantee>__grants`. Every access re-checks the share and its chain
at the owner's side (`call.shared`); read gives search/answer/get/list, write adds document
changes; deleting a kb and sharing it without allow_resharing stay the owner's.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.rag.access import Kb, Need, Reacher, check_org, invalid, kb_doc, not_found
from mcpmesh.rag.app import RagApp, iso, utcnow
from mcpmesh.service import Call
from mcpmesh.service import shares as shares_lib
from mcpmesh.service.grants import Shared
from mcpmesh.service.shares import (
    Access,
    Chain,
    aware,
    better,
    check_chain,
    narrowed,
    pointer_owner,
    revoke_cascade,
)
from mcpmesh.store import TenantStore

MAX_EXPIRY_S = 100 * 365 * 24 * 3600


@dataclass(frozen=True)
class KbGrant:
    share_id: str
    owner: str
    kb: str
    access: Access
    expires_at: datetime | None
    allow_resharing: bool
    require_attribution: bool

    def chain(self) -> Chain:
        return Chain({}, self.access, self.expires_at, self.require_attribution)

    def attribution(self) -> dict[str, Any] | None:
        return shares_lib.attribution(self.owner, self.share_id) if self.require_attribution else None


async def check_kb_share(
    owner: TenantStore, share_id: str, grantee: str, kb: str, now: datetime
) -> KbGrant | None:
    chain = await check_chain(
        await owner.collection("shares"),
        share_id,
        grantee,
        owner.org_id,
        now=now,
        covers=lambda s: s.get("kb") == kb,
    )
    if chain is None:
        return None
    return KbGrant(
        share_id=chain.share["_id"],
        owner=owner.org_id,
        kb=kb,
        access=chain.access,
        expires_at=chain.expires_at,
        allow_resharing=bool(chain.share.get("allow_resharing")),
        require_attribution=chain.require_attribution,
    )


async def find_grant(call: Reacher, owner: str, kb: str) -> Shared[KbGrant] | None:
    """The best valid grant `owner` gave the caller on `kb`, checked at the owner's side now."""
    held = await (await call.store.collection("grants")).find({"owner": owner, "kb": kb}).to_list(None)
    if not held:
        return None
    now = utcnow()

    async def check(store: TenantStore) -> KbGrant | None:
        best: KbGrant | None = None
        for pointer in held:
            grant = await check_kb_share(store, pointer["_id"], call.org_id, kb, now)
            if grant is not None:
                best = better(best, grant)
        return best

    return await call.shared(owner, check)


async def resolve_shared(call: Reacher, kb: str, need: Need, owner: str) -> Kb:
    shared = await find_grant(call, owner, kb)
    if shared is None or shared.vectors is None:
        raise not_found(kb)
    grant = shared.grant
    if need == "write" and grant.access != "write":
        raise MeshException(
            ErrorCode.FORBIDDEN, "your org has read-only access to this shared knowledge base"
        )
    if need == "delete":
        raise MeshException(ErrorCode.FORBIDDEN, "only the owner org can delete a knowledge base")
    if need == "share" and not grant.allow_resharing:
        raise MeshException(ErrorCode.FORBIDDEN, "your grant on this knowledge base does not allow resharing")
    doc = await kb_doc(shared.store, kb)
    if doc is None:
        raise not_found(kb)
    return Kb(kb, doc, shared.store, shared.vectors, grant.access, grant)


def _expiry(expires_at: str | None, expires_in_s: float | None, now: datetime) -> datetime | None:
    if expires_at is not None and expires_in_s is not None:
        raise invalid("give expires_at or expires_in_s, not both")
    if expires_in_s is not None:
        if not 0 < expires_in_s <= MAX_EXPIRY_S:
            raise invalid("expires_in_s must be a positive number of seconds (at most 100 years)")
        return aware(now + timedelta(seconds=expires_in_s))
    if expires_at is None:
        return None
    try:
        when = aware(datetime.fromisoformat(expires_at))
    except ValueError:
        raise invalid("expires_at must be an ISO 8601 time like 2027-01-31T12:00:00Z") from None
    if when <= now:
        raise invalid("expires_at must be in the future")
    return when


def share_view(share: dict[str, Any], now: datetime) -> dict[str, Any]:
    return shares_lib.share_view(share, now, kb=share["kb"], owner_org=share["owner"])


async def share(
    app: RagApp,
    call: Call,
    target: Kb,
    *,
    grantee: str,
    access: str,
    expires_at: str | None,
    expires_in_s: float | None,
    allow_resharing: bool,
    require_attribution: bool,
) -> dict[str, Any]:
    """Give `grantee` access to `target` (resolved for "share": the caller's own kb, or one shared
    with it that it may reshare). A repeat for the same grantee sets the same fields again."""
    grantee = check_org(grantee, "grantee")
    if access not in ("read", "write"):
        raise invalid("access is 'read' or 'write'")
    level: Access = "write" if access == "write" else "read"
    now = utcnow()
    expires = _expiry(expires_at, expires_in_s, now)
    if grantee in (call.org_id, target.owner):
        raise invalid("the grantee already has full access to this knowledge base")
    if grantee == app.settings.system_org:
        raise invalid("knowledge bases cannot be shared with the system org")
    parent: KbGrant | None = target.grant
    expires, attribution = narrowed(
        None if parent is None else parent.chain(), level, expires, require_attribution, what="knowledge base"
    )
    fields = {
        "access": level,
        "expires_at": expires,
        "allow_resharing": bool(allow_resharing),
        "require_attribution": attribution,
        "parent": parent.share_id if parent else None,
    }
    shares = await target.store.collection("shares")
    key = {"kb": target.name, "grantee": grantee, "granted_by": call.org_id}
    existing = await shares.find_one_and_update(key, {"$set": fields})
    share_id = existing["_id"] if existing is not None else "kbs-" + secrets.token_hex(12)
    if existing is None:
        await shares.insert_one({"_id": share_id, "owner": target.owner, **key, "created_at": now, **fields})
    pointer = {"owner": target.owner, "kb": target.name}
    await shares_lib.file_pointer(app.service, shares, share_id, grantee, pointer, created=existing is None)
    doc = await shares.find_one({"_id": share_id})
    assert doc is not None
    return share_view(doc, now)


async def revoke(
    app: RagApp, call: Call, target: Kb, grantee: str | None, share_id: str | None
) -> dict[str, Any]:
    """Revoke shares on `target` (all the owner's, or the reshares the caller made), with every
    reshare made from them; takes effect on the grantee's next call."""
    if (grantee is None) == (share_id is None):
        raise invalid("give share_id or grantee")
    query: dict[str, Any] = {"kb": target.name}
    if share_id is not None:
        query["_id"] = share_id
    else:
        query["grantee"] = check_org(grantee or "", "grantee")
    if target.role != "owner":
        query["granted_by"] = call.org_id
    shares = await target.store.collection("shares")
    ids = [doc["_id"] async for doc in shares.find(query, {"_id": 1})]
    if not ids:
        raise MeshException(ErrorCode.NOT_FOUND, "no such share to revoke")
    return {"revoked": await revoke_cascade(app.service, target.store, "shares", ids)}


async def drop_kb_shares(app: RagApp, owner: TenantStore, kb: str) -> None:
    shares = await owner.collection("shares")
    ids = [doc["_id"] async for doc in shares.find({"kb": kb}, {"_id": 1})]
    await revoke_cascade(app.service, owner, "shares", ids)


async def list_shares(call: Call, kb: str | None) -> dict[str, Any]:
    """The shares the caller's org gave on its own kbs (optionally one)."""
    query = {"kb": kb} if kb is not None else {}
    now = utcnow()
    docs = await (await call.store.collection("shares")).find(query).sort("_id", 1).to_list(1000)
    return {"shares": [share_view(doc, now) for doc in docs]}


async def shared_with_me(call: Call) -> dict[str, Any]:
    """The kbs other orgs currently share with the caller's org (expired or revoked left out)."""
    pointers = await (await call.store.collection("grants")).find({}).sort("_id", 1).to_list(1000)
    items: list[dict[str, Any]] = []
    held = {(pointer_owner(p, call.org_id), p.get("kb")) for p in pointers}
    for owner, kb in sorted((o, k) for o, k in held if o is not None and isinstance(k, str)):
        shared = await find_grant(call, owner, kb)
        if shared is None:
            continue
        grant = shared.grant
        items.append(
            {
                "kb": kb,
                "owner_org": owner,
                "access": grant.access,
                "expires_at": iso(grant.expires_at),
                "allow_resharing": grant.allow_resharing,
                "require_attribution": grant.require_attribution,
                "attribution": grant.attribution(),
            }
        )
    return {"knowledge_bases": items}
