"""Who may do what with a context id: the caller's own, a system context, or a grant.

Lookup order for a context id sent by org O: O's own contexts, then the system org's
(global `system/...` namespaces), then the grants O holds (its `<O>__grants` pointers,
each checked at the owner's side). Whatever the reason (no such id anywhere, another
org's context, an expired or revoked grant) the answer is the same "not found", so an
org learns nothing about ids it has no access to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from mcpmesh.context.app import ContextApp
from mcpmesh.context.clock import utcnow
from mcpmesh.context.grants import Grant, better, check_share, pointer_owner
from mcpmesh.context.ids import check_context_id
from mcpmesh.context.lifecycle import open_context, peek
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.service import Call
from mcpmesh.tenancy.scopes import covers

Need = Literal["read", "write", "delete", "share"]
Role = Literal["owner", "system", "read", "write"]


@dataclass
class Target:
    """A context the caller may use as `need`d, opened (hot, touched)."""

    owner: str
    ctx_id: str
    doc: dict[str, Any]
    role: Role
    grant: Grant | None = None


def not_found(ctx_id: str) -> MeshException:
    return MeshException(ErrorCode.NOT_FOUND, f"context {ctx_id!r} not found")


def is_admin(call: Call) -> bool:
    return covers(call.stamp.scopes, "admin")


async def resolve(app: ContextApp, call: Call, ctx_id: str, need: Need) -> Target:
    check_context_id(ctx_id)
    org = call.org_id
    doc = await open_context(app, org, ctx_id)
    if doc is not None:
        return Target(owner=org, ctx_id=ctx_id, doc=doc, role="owner")
    if org != app.system_org:
        found = await peek(app, app.system_org, ctx_id)
        if found is not None:
            if need == "share":
                raise MeshException(
                    ErrorCode.INVALID_REQUEST,
                    "system contexts are readable by every org already: they cannot be shared",
                )
            if need != "read" and not is_admin(call):
                raise MeshException(
                    ErrorCode.FORBIDDEN, "system contexts can be changed only with the 'admin' scope"
                )
            doc = await open_context(app, app.system_org, ctx_id)
            if doc is None:
                raise not_found(ctx_id)
            return Target(owner=app.system_org, ctx_id=ctx_id, doc=doc, role="system")
    grant = await find_context_grant(app, org, ctx_id)
    if grant is None:
        raise not_found(ctx_id)
    if need == "write" and grant.access != "write":
        raise MeshException(ErrorCode.FORBIDDEN, "your org has read-only access to this shared context")
    if need == "delete":
        raise MeshException(ErrorCode.FORBIDDEN, "only the owner org can delete a context")
    if need == "share" and not grant.allow_resharing:
        raise MeshException(ErrorCode.FORBIDDEN, "your grant on this context does not allow resharing")
    doc = await open_context(app, grant.owner, ctx_id)
    if doc is None:
        raise not_found(ctx_id)
    return Target(owner=grant.owner, ctx_id=ctx_id, doc=doc, role=grant.access, grant=grant)


async def find_context_grant(app: ContextApp, grantee: str, ctx_id: str) -> Grant | None:
    """The best valid grant `grantee` holds on `ctx_id` (a context share, or a namespace
    share covering the context's current namespace), checked at the owner's side now."""
    grants = await app.collection(grantee, "grants")
    pointers = await grants.find({"$or": [{"ctx_id": ctx_id}, {"target": "namespace"}]}).to_list(None)
    now = utcnow()
    namespaces: dict[str, str | None] = {}  # owner -> the context's namespace there (None: not there)
    best: Grant | None = None
    for pointer in pointers:
        owner = pointer_owner(pointer, grantee)
        if owner is None:
            continue
        if owner not in namespaces:
            found = await peek(app, owner, ctx_id)
            namespaces[owner] = found[0].get("namespace") if found else None
        namespace = namespaces[owner]
        if namespace is None:
            continue
        if pointer.get("target") == "namespace" and pointer.get("namespace") != namespace:
            continue
        grant = await check_share(
            app, owner, pointer["_id"], grantee, now=now, ctx_id=ctx_id, namespace=namespace
        )
        if grant is not None:
            best = better(best, grant)
    return best


async def find_namespace_grant(app: ContextApp, grantee: str, owner: str, namespace: str) -> Grant | None:
    """The best valid namespace grant `owner` gave `grantee` on `namespace`."""
    grants = await app.collection(grantee, "grants")
    now = utcnow()
    best: Grant | None = None
    async for pointer in grants.find({"owner": owner, "namespace": namespace, "target": "namespace"}):
        grant = await check_share(app, owner, pointer["_id"], grantee, now=now, namespace=namespace)
        if grant is not None:
            best = better(best, grant)
    return best
