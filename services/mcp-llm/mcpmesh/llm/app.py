"""What the tools share: settings, the routing (system table, routers), the master keys of org
secrets, and counters (cache hits and misses, provider calls) for stats and tests."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from mcpmesh.llm import offline
from mcpmesh.llm.keys import ProviderKeys, load_master_keys
from mcpmesh.llm.orgconfig import OrgConfig
from mcpmesh.llm.providers import ProviderSpec, parse_table
from mcpmesh.llm.routing import Routing
from mcpmesh.llm.settings import LlmSettings
from mcpmesh.secrets import MasterKeys, SecretValue
from mcpmesh.service import Call, Lifespan, MeshService


@dataclass
class LlmApp:
    settings: LlmSettings
    routing: Routing
    master: MasterKeys | None
    stats: Counter[str] = field(default_factory=Counter)

    def keys(self, call: Call) -> ProviderKeys:
        return ProviderKeys(call.store, self.master)

    def key_loader(self, call: Call, config: OrgConfig):  # type: ignore[no-untyped-def]
        """Reveals the org's key of a provider that has one (for building its router)."""

        async def load(provider: ProviderSpec) -> SecretValue | None:
            if provider.name not in config.keyed:
                return None
            return await self.keys(call).reveal(provider.name)

        return load


def quiet_litellm() -> None:
    """litellm logs provider error texts (and request details at debug): the service logs its own
    sanitized lines instead."""
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def lifespan_for(settings: LlmSettings) -> Lifespan:
    @contextlib.asynccontextmanager
    async def lifespan(service: MeshService) -> AsyncIterator[LlmApp]:
        quiet_litellm()
        offline.register()
        yield LlmApp(settings, Routing(settings, parse_table(settings.providers)), load_master_keys())

    return lifespan
