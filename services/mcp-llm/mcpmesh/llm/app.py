"""What the tools share: settings, the routing (system table, routers), the org configurations
kept briefly, the usage buckets being written, and counters (cache hits and misses, provider calls) for stats and tests."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from mcpmesh.llm import local, offline, orgconfig
from mcpmesh.llm.configcache import ConfigCache
from mcpmesh.llm.keys import ProviderKeys
from mcpmesh.llm.orgconfig import OrgConfig
from mcpmesh.llm.providers import ProviderSpec, parse_table
from mcpmesh.llm.routing import KeyLoader, Routing
from mcpmesh.llm.settings import LlmSettings
from mcpmesh.llm.usage import Buckets
from mcpmesh.secrets import SecretValue
from mcpmesh.service import Call, Lifespan, MeshService


@dataclass
class LlmApp:
    settings: LlmSettings
    routing: Routing
    stats: Counter[str] = field(default_factory=Counter)
    buckets: Buckets = field(default_factory=Buckets)
    configs: ConfigCache = field(init=False)

    def __post_init__(self) -> None:
        self.configs = ConfigCache(self.settings.config_ttl_s)

    @staticmethod
    def keys(call: Call) -> ProviderKeys:
        return ProviderKeys(call.secrets)

    async def config(self, call: Call, *, fresh: bool = False) -> OrgConfig:
        """The org's configuration, kept up to LLM_CONFIG_TTL_S (`fresh`: read now, for the admin
        tools), with its keys' descriptions read at every call of an org with providers of its own
        (keys matter to no other)."""
        if fresh:
            self.configs.forget(call.org_id)
        config = await self.configs.get(call.org_id, lambda: orgconfig.load(call.store))
        if config.providers or fresh:
            config = await orgconfig.with_keys(config, self.keys(call))
        return config

    def key_loader(self, call: Call, config: OrgConfig) -> KeyLoader:
        """Reveals the org's key of a provider that has one (for building its router)."""

        async def load(provider: ProviderSpec) -> SecretValue | None:
            if provider.name not in config.keys:
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
        local.register()
        app = LlmApp(settings, Routing(settings, parse_table(settings.providers)))
        try:
            yield app
        finally:
            await app.buckets.close()
            app.routing.close()

    return lifespan
