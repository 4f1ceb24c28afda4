"""What every part of the service shares: the kit's MeshService, settings, the token counter."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field

from mcpmesh.context.settings import ContextSettings
from mcpmesh.context.tokens import TokenCounter
from mcpmesh.proto.tiers import OrgSettings
from mcpmesh.service import MeshService
from mcpmesh.store import Collection, TenantStore

#: The tier whose defaults apply to the system org when the gateway published no settings for it.
SYSTEM_TIER = "enterprise"


@dataclass
class ContextApp:
    service: MeshService
    settings: ContextSettings
    counter: TokenCounter
    #: Operation counts (entries read, moves, repairs...), for tests and the benchmark.
    stats: Counter[str] = field(default_factory=Counter)
    sweeper: asyncio.Task[None] | None = None
    _registered: set[str] = field(default_factory=set)

    @property
    def system_org(self) -> str:
        return self.settings.system_org

    def tenant(self, org_id: str) -> TenantStore:
        """Any org's store. Callers pass only the caller's org, the system org, or an org
        whose grant was just checked (sharing writes only the grant index of a grantee)."""
        return self.service.store.for_tenant(org_id)

    async def collection(self, org_id: str, kind: str) -> Collection:
        return await self.tenant(org_id).collection(kind)

    async def owner_settings(self, org_id: str, tier: str | None) -> OrgSettings:
        """The limits of a context's owner: its published settings, else its tier's defaults."""
        if org_id == self.system_org:
            tier = SYSTEM_TIER
        return await self.service.org_settings(org_id, tier or "free")

    async def register_org(self, org_id: str) -> None:
        """Remember that `org_id` has contexts, so the sweep visits it (once per process)."""
        if org_id in self._registered:
            return
        registry = await self.collection(self.system_org, "context_orgs")
        await registry.update_one({"_id": org_id}, {"$setOnInsert": {"org_id": org_id}}, upsert=True)
        self._registered.add(org_id)

    async def registered_orgs(self) -> list[str]:
        registry = await self.collection(self.system_org, "context_orgs")
        orgs = [doc["_id"] async for doc in registry.find({}, {"_id": 1})]
        return sorted({*orgs, self.system_org})

    async def close(self) -> None:
        """Stop the background sweep (the kit has no stop hook: see README)."""
        task, self.sweeper = self.sweeper, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
