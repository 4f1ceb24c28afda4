"""Provider selection, in the seed's order, and one litellm Router per org configuration version.

1. the org's own providers, 2. then the system's, 3. the tier's `allowed_models`, 4. the model
the request names (or its alias), 5. a provider with capacity: the deployments serving that
model, then those of the same model class, as the Router's fallback chain (429, 5xx, timeouts
and a full rpm/tpm budget move on to the next).
"""

from __future__ import annotations

import fnmatch
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Final

from litellm import Router

from mcpmesh.llm.orgconfig import OrgConfig
from mcpmesh.llm.providers import Deployment, ProviderSpec
from mcpmesh.llm.settings import LlmSettings
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.secrets import SecretValue

#: Sent as the key of a provider that has none (an open OpenAI-compatible endpoint): litellm
#: would otherwise fall back to OPENAI_API_KEY from the environment — the system's key.
NO_KEY: Final = "no-key"
_DEFAULT_ALIAS: Final = {"chat": "default", "embedding": "embed"}

KeyLoader = Callable[[ProviderSpec], Awaitable[SecretValue | None]]


@dataclass(frozen=True)
class Selection:
    requested: str
    model: str  # the resolved model name
    chain: tuple[Deployment, ...]  # first choice first; the rest are the fallbacks
    #: Deployments left out before the call, with why ("endpoint refused", "tpm"): reported as tried.
    skipped: tuple[tuple[Deployment, str], ...] = ()

    def without(self, deployment: Deployment, reason: str) -> Selection:
        return replace(
            self,
            chain=tuple(d for d in self.chain if d != deployment),
            skipped=(*self.skipped, (deployment, reason)),
        )


@dataclass(frozen=True)
class Routed:
    """A Router and the tag of its deployment names (unique per router: litellm keeps some
    state per deployment id process-wide). Provider rpm/tpm are the service's (budgets.py)."""

    router: Router
    tag: str

    def name(self, deployment: Deployment) -> str:
        return f"{self.tag}+{deployment.id}"

    def route(self, selection: Selection) -> dict[str, Any]:
        """The Router arguments for a selection: its first choice, then the rest as fallbacks."""
        chain = selection.chain
        return {
            "model": self.name(chain[0]),
            "fallbacks": [self.name(d) for d in chain[1:]],
            "max_fallbacks": len(chain),
            "include_fallback_errors": True,
        }

    def position(self, selection: Selection, model_id: object) -> int:
        """Where in the chain the deployment the Router reports (`model_id`) stands."""
        names = [self.name(d) for d in selection.chain]
        return names.index(model_id) if model_id in names else 0

    def close(self) -> None:
        """Unhook the router from litellm's process-wide callback lists."""
        self.router.discard()


def allows(patterns: list[str], deployment: Deployment) -> bool:
    return any(
        fnmatch.fnmatchcase(deployment.label, p) or fnmatch.fnmatchcase(deployment.model.name, p)
        for p in patterns
    )


class Routing:
    """The system table, org configurations onto Routers, and model selection."""

    def __init__(self, settings: LlmSettings, system: tuple[ProviderSpec, ...]) -> None:
        self.settings = settings
        self.system = system
        self._routers: OrderedDict[tuple[str, int, str], Routed] = OrderedDict()
        self._built = 0

    def deployments(self, config: OrgConfig, mode: str | None = None) -> list[Deployment]:
        """The org's own first, then the system's, in table order."""
        return [
            Deployment(p, m)
            for p in (*config.providers, *self.system)
            for m in p.models
            if mode is None or m.mode == mode
        ]

    def alias(self, config: OrgConfig, name: str) -> str:
        for _ in range(4):  # an alias may name another alias, not forever
            target = config.aliases.get(name) or self.settings.aliases.get(name)
            if target is None or target == name:
                return name
            name = target
        return name

    def select(self, config: OrgConfig, allowed: list[str], requested: str | None, mode: str) -> Selection:
        asked = requested or _DEFAULT_ALIAS[mode]
        name = self.alias(config, asked)
        every = self.deployments(config, mode)
        pinned = [d for d in every if d.label == name]  # "<provider>/<model>" names one deployment
        model = pinned[0].model.name if pinned else name
        serving = pinned + [d for d in every if d.model.name == model and d not in pinned]
        permitted = [d for d in every if allows(allowed, d)]
        if not serving:
            raise MeshException(
                ErrorCode.NOT_FOUND,
                f"unknown {mode} model {asked!r}: models you may use: {_names(permitted)}",
                details={"allowed": _names(permitted)},
            )
        first = [d for d in serving if allows(allowed, d)]
        if not first:
            raise MeshException(
                ErrorCode.FORBIDDEN,
                f"model {asked!r} is not allowed for your organization (allowed_models {allowed}): "
                f"models you may use: {_names(permitted)}",
                retryable=False,
                details={"allowed": _names(permitted)},
            )
        model_class = first[0].model.model_class
        kin = [d for d in permitted if d.model.model_class == model_class and d not in first]
        return Selection(asked, model, tuple(first + kin))

    async def router(self, org_id: str, config: OrgConfig, key_of: KeyLoader) -> Routed:
        """The Router for this configuration version (orgs without their own share the system's)."""
        version, keys = config.slot
        slot = (org_id, version, keys) if version else ("", 0, "")
        routed = self._routers.get(slot)
        if routed is not None:
            self._routers.move_to_end(slot)
            return routed
        self._built += 1
        tag = f"r{self._built}"
        deployments = self.deployments(config)
        entries = [await self._entry(f"{tag}+{d.id}", d, key_of) for d in deployments]
        router = Router(
            model_list=entries,
            num_retries=self.settings.num_retries,
            timeout=self.settings.provider_timeout_s,
            cooldown_time=self.settings.cooldown_s,
            disable_cooldowns=self.settings.cooldown_s <= 0,
        )
        routed = Routed(router, tag)
        self._routers[slot] = routed
        while len(self._routers) > self.settings.max_routers:
            self._routers.popitem(last=False)[1].close()
        return routed

    def close(self) -> None:
        while self._routers:
            self._routers.popitem()[1].close()

    async def _entry(self, name: str, d: Deployment, key_of: KeyLoader) -> dict[str, Any]:
        p, m = d.provider, d.model
        params: dict[str, Any] = {"model": d.litellm_model, "api_key": await self._key(p, key_of)}
        if p.api_base:
            params["api_base"] = p.api_base
        return {"model_name": name, "litellm_params": params, "model_info": {"id": name, "mode": m.mode}}

    async def _key(self, provider: ProviderSpec, key_of: KeyLoader) -> str:
        if provider.owner == "org":
            key = await key_of(provider)
            return key.reveal() if key is not None else NO_KEY
        if provider.api_key_env:
            return os.environ.get(provider.api_key_env) or NO_KEY
        return NO_KEY


def _names(deployments: list[Deployment]) -> list[str]:
    return sorted({d.model.name for d in deployments} | {d.label for d in deployments})
