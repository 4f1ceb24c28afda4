"""What every part of the service shares: settings, the token counter, the stats, the kit's service.

A ContextApp is the service's lifespan state (`lifespan` below): made at start, reached by
handlers with `call.state(ContextApp)`, closed (its background sweep stopped) at stop. It
holds no store handle: the caller's org is `call.store`, another org's (a grant's owner,
the system org) is what `call.shared` returns after a check (see access.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from mcpmesh.bus import cancel_until_done
from mcpmesh.context.settings import ContextSettings
from mcpmesh.context.tokens import TokenCounter, load_counter
from mcpmesh.proto.tiers import OrgSettings
from mcpmesh.service import Lifespan, MeshService

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

    @property
    def system_org(self) -> str:
        return self.settings.system_org

    async def owner_settings(self, org_id: str, tier: str | None) -> OrgSettings:
        """The limits of a context's owner: its published settings, else its tier's defaults."""
        if org_id == self.system_org:
            tier = SYSTEM_TIER
        return await self.service.org_settings(org_id, tier or "free")

    async def close(self) -> None:
        """Stop the background sweep (until it is done: `cancel_until_done`)."""
        task, self.sweeper = self.sweeper, None
        await cancel_until_done([task], what="context sweeper")


def lifespan_for(settings: ContextSettings) -> Lifespan:
    """The service's lifespan: a ContextApp, with the periodic sweep running while it is up."""

    @contextlib.asynccontextmanager
    async def lifespan(service: MeshService) -> AsyncIterator[ContextApp]:
        from mcpmesh.context.sweep import run_periodically

        app = ContextApp(service=service, settings=settings, counter=load_counter(settings.token_encoding))
        if settings.sweep_interval_s > 0:
            app.sweeper = asyncio.get_running_loop().create_task(run_periodically(app))
        try:
            yield app
        finally:
            await app.close()

    return lifespan
