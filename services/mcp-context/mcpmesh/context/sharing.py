"""The sharing tools: share, revoke_share, shared_with_me, list_shares (see grants.py for the model)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mcpmesh.context.access import find_namespace_grant, not_found, resolve
from mcpmesh.context.app import ContextApp
from mcpmesh.context.clock import iso, parse_duration, parse_time, utcnow
from mcpmesh.context.cursor import decode_cursor, encode_cursor, query_hash
from mcpmesh.context.grants import Grant, check_share, pointer_owner, revoke_cascade, share_view
from mcpmesh.context.ids import SHARE_ID_RE, check_context_id, check_share_id, new_share_id
from mcpmesh.context.inputs import (
    check_access,
    check_limit,
    check_namespace,
    check_org,
    invalid,
    is_system_namespace,
)
from mcpmesh.context.lifecycle import peek
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.service import Call
from mcpmesh.service.shares import Chain, file_pointer, narrowed
from mcpmesh.store import TenantStore


def _expiry(expires_at: str | None, expires_in_s: float | None, now: datetime) -> datetime | None:
    if expires_at is not None and expires_in_s is not None:
        raise invalid("give expires_at or expires_in_s, not both")
    if expires_in_s is not None:
        return now + parse_duration(expires_in_s, "expires_in_s")
    if expires_at is None:
        return None
    when = parse_time(expires_at, "expires_at")
    if when <= now:
        raise invalid("expires_at must be in the future")
    return when


async def share(
    app: ContextApp,
    call: Call,
    *,
    grantee: str,
    access: str,
    ctx_id: str | None,
    namespace: str | None,
    owner_org: str | None,
    expires_at: str | None,
    expires_in_s: float | None,
    allow_resharing: bool,
    require_attribution: bool,
) -> dict[str, Any]:
    if (ctx_id is None) == (namespace is None):
        raise invalid("give exactly one of ctx_id (share one context) or namespace (share a whole namespace)")
    grantee = check_org(grantee, "grantee")
    level = check_access(access)
    now = utcnow()
    expires = _expiry(expires_at, expires_in_s, now)
    if grantee == call.org_id:
        raise invalid("a context cannot be shared with your own org")
    if grantee == app.system_org:
        raise invalid("contexts cannot be shared with the system org")
    parent: Grant | None
    owner: TenantStore
    if ctx_id is not None:
        if owner_org is not None:
            raise invalid("owner_org goes with namespace, not with ctx_id")
        target = await resolve(app, call, ctx_id, "share")
        owner, parent = target.store, target.grant
        key: dict[str, Any] = {"target": "context", "ctx_id": ctx_id}
    else:
        namespace = check_namespace(namespace)
        if is_system_namespace(namespace):
            raise invalid("system namespaces are readable by every org already: they cannot be shared")
        owner, parent = call.store, None
        if owner_org not in (None, call.org_id):
            shared = await find_namespace_grant(app, call, check_org(owner_org, "owner_org"), namespace)
            if shared is None:
                raise MeshException(
                    ErrorCode.NOT_FOUND, f"no namespace {namespace!r} of that org is shared with your org"
                )
            if not shared.grant.allow_resharing:
                raise MeshException(
                    ErrorCode.FORBIDDEN, "your grant on this namespace does not allow resharing"
                )
            owner, parent = shared.store, shared.grant
        key = {"target": "namespace", "namespace": namespace}
    if grantee == owner.org_id:
        raise invalid("the grantee is the owner of this context: it has full access already")
    expires, require_attribution = narrowed(
        None if parent is None else Chain({}, parent.access, parent.expires_at, parent.require_attribution),
        level,
        expires,
        require_attribution,
        what="context",
    )

    shares = await owner.collection("shares")
    fields = {
        "access": level,
        "expires_at": expires,
        "allow_resharing": bool(allow_resharing),
        "require_attribution": bool(require_attribution),
        "parent": parent.share_id if parent else None,
    }
    existing = await shares.find_one_and_update(
        {**key, "grantee": grantee, "granted_by": call.org_id}, {"$set": fields}
    )
    share_id = existing["_id"] if existing is not None else new_share_id()
    if existing is None:
        await shares.insert_one(
            {
                "_id": share_id,
                "owner": owner.org_id,
                **key,
                "grantee": grantee,
                "granted_by": call.org_id,
                "created_at": now,
                **fields,
            }
        )
    pointer = {"owner": owner.org_id, **key, "created_at": now}
    await file_pointer(app.service, shares, share_id, grantee, pointer, created=existing is None)
    doc = await shares.find_one({"_id": share_id})
    assert doc is not None
    return share_view(doc, now)


async def _share_of(app: ContextApp, call: Call, share_id: str) -> tuple[TenantStore, dict[str, Any]]:
    """(owner's store, share) for a share the caller may revoke: it owns the target, or granted it
    (a reshare, found at the owner's side of a grant the caller holds)."""
    own = await (await call.store.collection("shares")).find_one({"_id": share_id})
    if own is not None:
        return call.store, own
    grants = await call.store.collection("grants")
    owners = {pointer_owner(p, call.org_id) async for p in grants.find({}, {"owner": 1})}

    async def granted_by_caller(store: TenantStore) -> dict[str, Any] | None:
        shares = await store.collection("shares")
        return await shares.find_one({"_id": share_id, "granted_by": call.org_id})

    for owner in sorted(o for o in owners if o is not None):
        shared = await call.shared(owner, granted_by_caller)
        if shared is not None:
            return shared.store, shared.grant
    raise MeshException(ErrorCode.NOT_FOUND, f"share {share_id!r} not found")


async def _shares_given_to(
    app: ContextApp,
    call: Call,
    grantee: str,
    ctx_id: str | None,
    namespace: str | None,
    owner_org: str | None,
) -> tuple[TenantStore, list[str]]:
    """(owner's store, ids) of the shares on a context or namespace given to `grantee` that the
    caller may revoke: all of them on its own, the reshares it made on another org's."""
    query: dict[str, Any]
    if ctx_id is not None:
        check_context_id(ctx_id)
        query = {"target": "context", "ctx_id": ctx_id, "grantee": grantee}
        if await peek(app, call.store, ctx_id) is not None:
            owner = call.store
        else:
            owner = (await resolve(app, call, ctx_id, "read")).store  # a grant the caller holds
            query["granted_by"] = call.org_id
    else:
        query = {"target": "namespace", "namespace": check_namespace(namespace), "grantee": grantee}
        owner = call.store
        if owner_org not in (None, call.org_id):
            query["granted_by"] = call.org_id
            other = check_org(owner_org, "owner_org")

    async def given(store: TenantStore) -> list[str] | None:
        shares = await store.collection("shares")
        return [doc["_id"] async for doc in shares.find(query, {"_id": 1})] or None

    if ctx_id is None and "granted_by" in query:  # another org's namespace: the caller's reshares
        shared = await call.shared(other, given)
        if shared is None:
            raise MeshException(ErrorCode.NOT_FOUND, "no such share to revoke")
        return shared.store, shared.grant
    ids = await given(owner)
    if not ids:
        raise MeshException(ErrorCode.NOT_FOUND, "no such share to revoke")
    return owner, ids


async def revoke(
    app: ContextApp,
    call: Call,
    *,
    share_id: str | None,
    ctx_id: str | None,
    namespace: str | None,
    grantee: str | None,
    owner_org: str | None,
) -> dict[str, Any]:
    if share_id is not None:
        if ctx_id is not None or namespace is not None or grantee is not None:
            raise invalid("give share_id alone, or grantee with ctx_id or namespace")
        owner, doc = await _share_of(app, call, check_share_id(share_id))
        ids = [doc["_id"]]
    else:
        if grantee is None or (ctx_id is None) == (namespace is None):
            raise invalid("give share_id, or grantee with exactly one of ctx_id or namespace")
        owner, ids = await _shares_given_to(
            app, call, check_org(grantee, "grantee"), ctx_id, namespace, owner_org
        )
    revoked = await revoke_cascade(app, owner, ids)
    return {"revoked": revoked}


async def shared_with_me(
    app: ContextApp, call: Call, *, limit: int | None, cursor: str | None
) -> dict[str, Any]:
    page = check_limit(limit)
    binding = query_hash("shared_with_me", call.org_id)
    after = decode_cursor(cursor, binding, SHARE_ID_RE)[1] if cursor is not None else ""
    grants = await call.store.collection("grants")
    now = utcnow()
    items: list[dict[str, Any]] = []
    last_seen: str | None = None
    more = False
    async for pointer in grants.find({"_id": {"$gt": after}}).sort("_id", 1):
        if len(items) == page:
            more = True
            break
        last_seen = pointer["_id"]
        owner = pointer_owner(pointer, call.org_id)
        if owner is None:
            continue
        item = await _shared_item(app, call, owner, pointer, now)
        if item is not None:
            items.append(item)
    return {
        "shares": items,
        "next_cursor": encode_cursor(binding, 0, last_seen) if more and last_seen else None,
    }


async def _shared_item(
    app: ContextApp, call: Call, owner: str, pointer: dict[str, Any], now: datetime
) -> dict[str, Any] | None:
    async def check(store: TenantStore) -> tuple[Grant, dict[str, Any]] | None:
        grant: Grant | None
        if pointer.get("target") == "context":
            ctx_id = pointer.get("ctx_id")
            found = await peek(app, store, ctx_id) if isinstance(ctx_id, str) else None
            if found is None:
                return None
            doc = found[0]
            grant = await check_share(
                store, pointer["_id"], call.org_id, now=now, ctx_id=ctx_id, namespace=doc.get("namespace")
            )
            extra: dict[str, Any] = {"ctx_id": ctx_id, "title": doc.get("title")}
        else:
            namespace = pointer.get("namespace")
            grant = await check_share(store, pointer["_id"], call.org_id, now=now, namespace=namespace)
            extra = {"namespace": namespace}
        return None if grant is None else (grant, extra)

    shared = await call.shared(owner, check)
    if shared is None:
        return None
    grant, extra = shared.grant
    item = {
        "share_id": grant.share_id,
        "target": grant.target,
        "owner_org": owner,
        "access": grant.access,
        "expires_at": iso(grant.expires_at),
        "allow_resharing": grant.allow_resharing,
        "require_attribution": grant.require_attribution,
        **extra,
    }
    attribution = grant.attribution()
    if attribution is not None:
        item["attribution"] = attribution
    return item


async def list_shares(
    app: ContextApp,
    call: Call,
    *,
    ctx_id: str | None,
    namespace: str | None,
    limit: int | None,
    cursor: str | None,
) -> dict[str, Any]:
    """Shares the caller's org has given on its own contexts and namespaces."""
    query: dict[str, Any] = {}
    if ctx_id is not None:
        check_context_id(ctx_id)
        if await peek(app, call.store, ctx_id) is None:
            raise not_found(ctx_id)
        query = {"target": "context", "ctx_id": ctx_id}
    elif namespace is not None:
        query = {"target": "namespace", "namespace": check_namespace(namespace)}
    page = check_limit(limit)
    binding = query_hash("list_shares", call.org_id, ctx_id, namespace)
    if cursor is not None:
        query["_id"] = {"$gt": decode_cursor(cursor, binding, SHARE_ID_RE)[1]}
    shares = await call.store.collection("shares")
    docs = await shares.find(query).sort("_id", 1).limit(page + 1).to_list(None)
    now = utcnow()
    more = len(docs) > page
    docs = docs[:page]
    return {
        "shares": [share_view(doc, now) for doc in docs],
        "next_cursor": encode_cursor(binding, 0, docs[-1]["_id"]) if more else None,
    }
