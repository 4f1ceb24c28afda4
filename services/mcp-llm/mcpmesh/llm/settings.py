"""The llm service's configuration: environment variables, one typed object (see README)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from mcpmesh.llm import local
from mcpmesh.proto.ids import SYSTEM_ORG, validate_org_id
from mcpmesh.service.envsettings import parse_value, settings_from_env

_ENV_PREFIX: Final = "LLM_"


def default_providers() -> list[dict[str, Any]]:
    """With no table configured: the built-in offline provider (no network, deterministic), and
    the local embedding model where its optional package is installed."""
    table: list[dict[str, Any]] = [{"name": "mock", "kind": "mesh-offline"}]
    if local.available():
        table.append({"name": "local", "kind": local.KIND})
    return table


DEFAULT_ALIASES: Final[dict[str, str]] = {
    "default": "echo",
    "fast": "echo",
    "cheap": "echo",
    "embed": "hash-embed",
}


@dataclass(frozen=True)
class LlmSettings:
    #: The system provider table: a JSON list of providers (README "Provider table").
    providers: list[dict[str, Any]] = field(default_factory=default_providers)
    #: System model aliases, JSON object alias -> model name; an org's own aliases win.
    aliases: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ALIASES))
    #: Longest one provider attempt may take (a slower one counts as failed and falls back).
    provider_timeout_s: float = 60.0
    #: Retries of one provider before falling back to the next (litellm's num_retries).
    num_retries: int = 0
    #: Seconds a failing provider is left out of an org's routing after it failed (0: never).
    cooldown_s: float = 30.0
    #: Routers kept (one per org configuration version); the least recently used is dropped.
    max_routers: int = 256
    #: Cached answers and embeddings live this long (0: no cache).
    cache_ttl_s: float = 3600.0
    #: An org's configuration (providers, aliases, keys' descriptions) is kept this long per
    #: replica: another replica's edit is seen after at most this long (0: read at every call).
    config_ttl_s: float = 5.0
    #: Org endpoints may resolve to loopback/private/link-local addresses (development only).
    allow_private_endpoints: bool = False
    #: Texts per provider call of `embed` (a larger request is sent in batches of this many).
    embed_batch: int = 256
    #: Texts one `embed` call may carry.
    max_embed_texts: int = 2048
    #: Providers an org may configure.
    max_org_providers: int = 16
    #: The platform's own org: system providers' rpm/tpm windows are counted in its store.
    system_org: str = SYSTEM_ORG

    def __post_init__(self) -> None:
        validate_org_id(self.system_org)
        if self.provider_timeout_s <= 0:
            raise ValueError("LLM_PROVIDER_TIMEOUT_S must be positive")
        if self.config_ttl_s < 0:
            raise ValueError("LLM_CONFIG_TTL_S must be >= 0")
        if self.num_retries < 0 or min(self.max_routers, self.max_org_providers, self.embed_batch) < 1:
            raise ValueError(
                "LLM_NUM_RETRIES must be >= 0; LLM_MAX_ROUTERS, LLM_MAX_ORG_PROVIDERS, LLM_EMBED_BATCH >= 1"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LlmSettings:
        env = os.environ if environ is None else environ
        table = env.get("LLM_PROVIDERS_FILE", "").strip()
        if table and not env.get(_ENV_PREFIX + "PROVIDERS", "").strip():
            providers = parse_value("LLM_PROVIDERS_FILE", Path(table).read_text(), list)
            return settings_from_env(cls, _ENV_PREFIX, env, providers=providers)
        return settings_from_env(cls, _ENV_PREFIX, env)
