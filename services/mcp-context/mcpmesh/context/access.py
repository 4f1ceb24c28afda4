"""Who may do what with a context id: the caller's own, a system context, or a grant.

Lookup order for a context id sent by org O: O's own contexts (`call.store`), then the
system org's (global `system/...` namespaces, readable by every org), then the grants O
holds (its `<O>__grants` pointers, each checked at the owner's side). Whatever the reason
(no such id anywhere, another org's context, an expired or revoked grant) the answer is
the same "not found", so an org learns nothing about ids it has no access to.

Another org's store is only ever what `call.shared(owner, check)` returns: `check` reads
the grant there (see mcpmesh.service.grants); no code here names an org to get a store.
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
from mcpmesh.service.grants import Shared
from mcpmesh.store import TenantStore
from mcpmesh.tenancy.scopes import covers

Need = Literal["read", "write", "delete", "share"]
Role = Literal["owner", "system", "read", "write"]


@dataclass
class Target:
    """A context the caller may use as `need`d, opened (hot, touched), in its owner's store."""

    store: TenantStore
    ctx_id: str
    doc: dict[str, Any]
    role: Role
    grant: Grant | None = None

    @property
    def owner(self) -> str:
        return self.store.org_id


def not_found(ctx_id: str) -> MeshException:
    return MeshException(ErrorCode.NOT_FOUND, f"context {ctx_id!r} not found")


def is_admin(call: Call) -> bool:
    return covers(call.stamp.scopes, "admin")


async def _system_contexts_are_public(_: TenantStore) -> Role:
    """The grant every org holds on the system org: its (global) contexts are readable by all;
    changing them needs the admin scope, which the callers check."""
    return "system"


async def system_store(app: ContextApp, call: Call) -> TenantStore:
    """The system org's store (global namespaces), reached through its standing public grant."""
    if call.org_id == app.system_org:
        return call.store
    shared = await call.shared(app.system_org, _system_contexts_are_public)
    assert shared is not None  # the public grant always holds
    return shared.store


async def resolve(app: ContextApp, call: Call, ctx_id: str, need: Need) -> Target:
    check_context_id(ctx_id)
    doc = await open_context(app, call.store, ctx_id)
    if doc is not None:
        return Target(store=call.store, ctx_id=ctx_id, doc=doc, role="owner")
    if call.org_id != app.system_org:
        system = await system_store(app, call)
        found = await peek(app, system, ctx_id)
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
            doc = await open_context(app, system, ctx_id)
            if doc is None:
                raise not_found(ctx_id)
            return Target(store=system, ctx_id=ctx_id, doc=doc, role="system")
    shared = await find_context_grant(app, call, ctx_id)
    if shared is None:
        raise not_found(ctx_id)
    grant = shared.grant
    if need == "write" and grant.access != "write":
        raise MeshException(ErrorCode.FORBIDDEN, "your org has read-only access to this shared context")
    if need == "delete":
        raise MeshException(ErrorCode.FORBIDDEN, "only the owner org can delete a context")
    if need == "share" and not grant.allow_resharing:
        raise MeshException(ErrorCode.FORBIDDEN, "your grant on this context does not allow resharing")
    doc = await open_context(app, shared.store, ctx_id)
    if doc is None:
        raise not_found(ctx_id)
    return Target(store=shared.store, ctx_id=ctx_id, doc=doc, role=grant.access, grant=grant)


def _best(current: Shared[Grant] | None, candidate: Shared[Grant] | None) -> Shared[Grant] | None:
    if current is None or candidate is None:
        return current or candidate
    return candidate if better(current.grant, candidate.grant) is candidate.grant else current


async def find_context_grant(app: ContextApp, call: Call, ctx_id: str) -> Shared[Grant] | None:
    """The best valid grant the caller holds on `ctx_id` (a context share, or a namespace
    share covering the context's current namespace), checked at the owner's side now."""
    grants = await call.store.collection("grants")
    pointers = await grants.find({"$or": [{"ctx_id": ctx_id}, {"target": "namespace"}]}).to_list(None)
    by_owner: dict[str, list[dict[str, Any]]] = {}
    for pointer in pointers:
        owner = pointer_owner(pointer, call.org_id)
        if owner is not None:
            by_owner.setdefault(owner, []).append(pointer)
    now = utcnow()
    best: Shared[Grant] | None = None
    for owner, held in sorted(by_owner.items()):

        async def check(store: TenantStore, held: list[dict[str, Any]] = held) -> Grant | None:
            found = await peek(app, store, ctx_id)
            namespace = found[0].get("namespace") if found else None
            if namespace is None:
                return None
            grant: Grant | None = None
            for pointer in held:
                if pointer.get("target") == "namespace" and pointer.get("namespace") != namespace:
                    continue
                checked = await check_share(
                    store, pointer["_id"], call.org_id, now=now, ctx_id=ctx_id, namespace=namespace
                )
                if checked is not None:
                    grant = better(grant, checked)
            return grant

        best = _best(best, await call.shared(owner, check))
    return best


async def find_namespace_grant(
    app: ContextApp, call: Call, owner: str, namespace: str
) -> Shared[Grant] | None:
    """The best valid namespace grant `owner` gave the caller on `namespace`, with owner's store."""
    grants = await call.store.collection("grants")
    held = await grants.find({"owner": owner, "namespace": namespace, "target": "namespace"}).to_list(None)
    if not held:
        return None
    now = utcnow()

    async def check(store: TenantStore) -> Grant | None:
        grant: Grant | None = None
        for pointer in held:
            checked = await check_share(store, pointer["_id"], call.org_id, now=now, namespace=namespace)
            if checked is not None:
                grant = better(grant, checked)
        return grant

    return await call.shared(owner, check)
