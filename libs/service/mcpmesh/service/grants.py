"""Reaching another org's data: only through a grant the owning service checks on this access.

A handler's own data is `call.store` (the caller's org, and only its). Another org's is
reached with `await call.shared(owner_org, check)` (a job: `job.shared`, the same): the kit hands `check` the owner's
store so it can read the grant records kept there (e.g. `<owner>__shares`); when `check`
returns a grant, the caller gets a `Shared` with the owner's store and that grant, else
None. There is no other way from a handler to an org's collections: no org-taking store
accessor is offered to services (a test checks their source for one).

Two narrower reaches exist for what grants themselves need:
- `service.grant_index(grantee)`: the one collection kind (declared `grant_index=`) where
  an owner files a pointer to a grant it gave, so the grantee can find it knowing only an
  id. A pointer grants nothing by itself: access is checked at the owner's side.
- `service.tenants(kind)`: each org that has a collection of `kind`, for background
  maintenance (sweeps) that runs for no caller.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from mcpmesh.store import Store, TenantStore

if TYPE_CHECKING:
    from mcpmesh.service.server import MeshService
    from mcpmesh.vectors import TenantVectors

G = TypeVar("G")

#: Reads the owner's grant records; returns the grant the caller holds now, else None.
GrantCheck = Callable[[TenantStore], Awaitable[G | None]]


@dataclass(frozen=True)
class Shared(Generic[G]):
    """Another org's store, reached with `grant` (checked on this access, never cached), and
    its knowledge bases when the service uses vectors (`MeshService(uses_vectors=True)`)."""

    store: TenantStore
    grant: G
    vectors: TenantVectors | None = None

    @property
    def owner(self) -> str:
        return self.store.org_id


async def reach_shared(store: Store, caller: str, owner: str, check: GrantCheck[G]) -> Shared[G] | None:
    """`owner`'s store when `check` finds a grant for `caller` there (an org needs none for its own)."""
    owner_store = store.for_tenant(owner)  # validates the org id
    if owner_store.org_id == caller:
        raise ValueError("an org reaches its own data through call.store, not through a grant")
    grant = await check(owner_store)
    return None if grant is None else Shared(owner_store, grant)


async def shared_for(service: MeshService, caller: str, owner: str, check: GrantCheck[G]) -> Shared[G] | None:
    """What `Call.shared` and `JobContext.shared` return: `reach_shared` on the service's store,
    with the owner's vectors when the service uses them."""
    shared = await reach_shared(service.store, caller, owner, check)
    if shared is not None and service.uses_vectors:
        shared = dataclasses.replace(shared, vectors=service.vectors.for_tenant(shared.owner))
    return shared
