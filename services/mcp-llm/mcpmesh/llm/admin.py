"""Org-level configuration tools: providers (keys write-only), aliases, and what they show."""

from __future__ import annotations

from typing import Any

from mcpmesh.llm import orgconfig, prices
from mcpmesh.llm.app import LlmApp
from mcpmesh.llm.providers import Deployment, check_alias_map, invalid, parse_provider
from mcpmesh.llm.routing import allows
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.service import Call
from mcpmesh.service.ssrf import check_url
from mcpmesh.telemetry.logs import get_logger

log = get_logger("mcpmesh.llm")


async def providers(app: LlmApp, call: Call) -> dict[str, Any]:
    config = await app.config(call, fresh=True)
    return {
        "version": config.version,
        "org": [{**p.public(), "key": config.keys.get(p.name)} for p in config.providers],
        "system": [p.public() for p in app.routing.system],
        "aliases": {**app.settings.aliases, **config.aliases},
    }


async def set_provider(app: LlmApp, call: Call, spec: dict[str, Any], api_key: str | None) -> dict[str, Any]:
    provider = parse_provider(spec, owner="org")
    if provider.api_base:
        await check_url(
            provider.api_base, allow_private=app.settings.allow_private_endpoints, what="api_base"
        )
    config = await app.config(call, fresh=True)
    others = [p for p in config.providers if p.name != provider.name]
    if len(others) >= app.settings.max_org_providers:
        raise MeshException(
            ErrorCode.LIMIT_EXCEEDED,
            f"your organization has {len(others)} providers, the most allowed: remove one first",
        )
    key_info = None
    if api_key is not None:
        key_info = await app.keys(call).put(provider.name, api_key)
    has_key = api_key is not None or provider.name in config.keys
    version = await orgconfig.save_provider(call.store, provider)
    app.configs.forget(call.org_id)
    log.info("llm provider set", provider=provider.name, key_set=api_key is not None, version=version)
    return {"provider": provider.public(), "key": key_info, "has_key": has_key, "version": version}


async def remove_provider(app: LlmApp, call: Call, name: str) -> dict[str, Any]:
    removed = await orgconfig.delete_provider(call.store, name)
    key_removed = await app.keys(call).delete(name)
    app.configs.forget(call.org_id)
    if not removed and not key_removed:
        raise MeshException(ErrorCode.NOT_FOUND, f"your organization has no provider {name!r}")
    log.info("llm provider removed", provider=name)
    return {"name": name, "removed": True}


async def set_aliases(app: LlmApp, call: Call, aliases: dict[str, str | None]) -> dict[str, Any]:
    config = await app.config(call, fresh=True)
    merged = dict(config.aliases)
    for alias, target in aliases.items():
        if target is None:
            merged.pop(alias, None)
        else:
            merged[alias] = target
    version = await orgconfig.save_aliases(call.store, check_alias_map(merged))
    app.configs.forget(call.org_id)
    return {"aliases": merged, "version": version}


async def models(app: LlmApp, call: Call) -> dict[str, Any]:
    config = await app.config(call)
    allowed = (await call.org_settings()).allowed_models
    out = [
        {
            **described(d),
            "provider": d.provider.name,
            "id": d.label,
            "billed_to": "org" if d.provider.owner == "org" else "system",
        }
        for d in app.routing.deployments(config)
        if allows(allowed, d)
    ]
    return {"allowed_models": allowed, "aliases": {**app.settings.aliases, **config.aliases}, "models": out}


def described(d: Deployment) -> dict[str, Any]:
    """The model as the table gives it, gaps (context window, prices) filled from litellm's
    bundled cost map."""
    shown = d.model.public()
    known = prices.known(d) or {}
    fill = {
        "context_window": known.get("max_input_tokens") or known.get("max_tokens"),
        "input_cost_per_token": known.get("input_cost_per_token"),
        "output_cost_per_token": known.get("output_cost_per_token"),
    }
    return {**shown, **{k: v for k, v in fill.items() if shown.get(k) is None}}


def check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise invalid("name must be a provider name")
    return name
