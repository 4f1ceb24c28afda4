"""An org's own LLM configuration, in its own store: providers (keys apart, sealed), aliases,
and a version that changes with every edit (a router is built once per version)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

from pymongo import ReturnDocument

from mcpmesh.llm.keys import ProviderKeys, version_of
from mcpmesh.llm.providers import ProviderSpec, parse_provider
from mcpmesh.store import TenantStore

CONFIG_KIND: Final = "llm_config"
_VERSION_ID: Final = "version"
_ALIASES_ID: Final = "aliases"
_PROVIDER: Final = "provider:"


@dataclass(frozen=True)
class OrgConfig:
    version: int = 0
    providers: tuple[ProviderSpec, ...] = ()
    aliases: dict[str, str] = field(default_factory=dict)
    #: The org's provider keys as may be shown (provider -> fingerprint, last4, updated_at).
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def slot(self) -> tuple[int, str]:
        """What a router is built from: the configuration version and the keys' version."""
        return self.version, version_of(
            {p.name: self.keys[p.name] for p in self.providers if p.name in self.keys}
        )


async def load(tenant: TenantStore) -> OrgConfig:
    """The org's configuration, without its keys (`with_keys`); the version is read first, so
    what follows is at least as new."""
    rows = await tenant.collection(CONFIG_KIND)
    version_doc = await rows.find_one({"_id": _VERSION_ID})
    providers: list[ProviderSpec] = []
    aliases: dict[str, str] = {}
    if version_doc is None:
        return OrgConfig()
    async for doc in rows.find({"_id": {"$ne": _VERSION_ID}}):
        if doc["_id"] == _ALIASES_ID:
            aliases = dict(doc.get("aliases") or {})
        elif doc["_id"].startswith(_PROVIDER):
            providers.append(parse_provider(doc["spec"], owner="org"))
    providers.sort(key=lambda p: (_position(p, version_doc), p.name))
    return OrgConfig(int(version_doc.get("v", 0)), tuple(providers), aliases)


async def with_keys(config: OrgConfig, keys: ProviderKeys) -> OrgConfig:
    """The configuration with its keys' descriptions, read now (a key set or deleted through the
    kit's secret tools counts from the next call)."""
    return replace(config, keys=await keys.infos())


def _position(provider: ProviderSpec, version_doc: dict[str, Any]) -> int:
    order: list[str] = version_doc.get("order") or []
    return order.index(provider.name) if provider.name in order else len(order)


async def _bump(tenant: TenantStore, *, add: str | None = None, drop: str | None = None) -> int:
    rows = await tenant.collection(CONFIG_KIND)
    update: dict[str, Any] = {"$inc": {"v": 1}, "$set": {"updated_at": datetime.now(UTC)}}
    if add is not None:
        update["$addToSet"] = {"order": add}
    if drop is not None:
        update["$pull"] = {"order": drop}
    doc = await rows.find_one_and_update(
        {"_id": _VERSION_ID}, update, upsert=True, return_document=ReturnDocument.AFTER
    )
    assert doc is not None
    return int(doc["v"])


async def save_provider(tenant: TenantStore, provider: ProviderSpec) -> int:
    rows = await tenant.collection(CONFIG_KIND)
    await rows.replace_one({"_id": _PROVIDER + provider.name}, {"spec": provider.to_doc()}, upsert=True)
    return await _bump(tenant, add=provider.name)


async def delete_provider(tenant: TenantStore, name: str) -> bool:
    rows = await tenant.collection(CONFIG_KIND)
    deleted = (await rows.delete_one({"_id": _PROVIDER + name})).deleted_count == 1
    if deleted:
        await _bump(tenant, drop=name)
    return deleted


async def save_aliases(tenant: TenantStore, aliases: dict[str, str]) -> int:
    rows = await tenant.collection(CONFIG_KIND)
    await rows.replace_one({"_id": _ALIASES_ID}, {"aliases": aliases}, upsert=True)
    return await _bump(tenant)
