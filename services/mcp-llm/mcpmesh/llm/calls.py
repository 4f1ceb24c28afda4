"""Serving one chat or embedding request: select, check endpoints, cache, then (a miss only:
a cached answer costs nothing) check budgets and limits, call the org's Router with the
fallback chain, attribute and meter the answer."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from itertools import zip_longest
from typing import Any

import litellm

from mcpmesh.llm import budgets, cache, limits, usage
from mcpmesh.llm.app import LlmApp
from mcpmesh.llm.errors import provider_error
from mcpmesh.llm.orgconfig import OrgConfig
from mcpmesh.llm.providers import Deployment
from mcpmesh.llm.routing import Routed, Selection
from mcpmesh.proto.errors import MeshException
from mcpmesh.proto.tiers import OrgSettings
from mcpmesh.service import Call
from mcpmesh.service.ssrf import check_url
from mcpmesh.telemetry.logs import get_logger

log = get_logger("mcpmesh.llm")

OnToken = Callable[[str], Awaitable[None]]


@dataclasses.dataclass
class Prepared:
    config: OrgConfig
    selection: Selection
    routed: Routed
    settings: OrgSettings
    #: The deployment whose provider's rpm counted this call before it was sent (budgets.py).
    reserved: Deployment | None = None
    #: Where the providers' windows are counted (set by `admit`).
    windows: budgets.Windows | None = None


async def prepare(app: LlmApp, call: Call, model: str | None, mode: str) -> Prepared:
    """Selection in the seed's order, endpoints checked now."""
    config = await app.config(call)
    settings = await call.org_settings()
    selection = app.routing.select(config, settings.allowed_models, model, mode)
    selection = await _reachable(app, selection)
    routed = await app.routing.router(call.org_id, config, app.key_loader(call, config))
    return Prepared(config, selection, routed, settings)


async def admit(app: LlmApp, call: Call, prepared: Prepared) -> Prepared:
    """Before a provider is called (never for a cache hit): the org's monthly budgets, the
    providers' rpm/tpm (a full one leaves the chain), the org's rpm/tpm of the model."""
    await usage.check_budget(call, app.buckets, prepared.settings)
    now = limits.now()
    windows = await budgets.Windows.of_call(call, app.settings.system_org, prepared.selection.chain)
    selection, reserved = await budgets.admit(windows, prepared.selection, now)
    try:
        await limits.admit(call.store, selection.chain[0].model)
    except MeshException:
        await budgets.release(windows, reserved, now)
        raise
    return dataclasses.replace(prepared, selection=selection, reserved=reserved, windows=windows)


async def _reachable(app: LlmApp, selection: Selection) -> Selection:
    """Org endpoints checked now (SSRF): a refused one is left out; none left, the refusal."""
    refusal: MeshException | None = None
    for d in selection.chain:
        if d.provider.owner == "org" and d.provider.api_base:
            try:
                await check_url(
                    d.provider.api_base, allow_private=app.settings.allow_private_endpoints, what="api_base"
                )
            except MeshException as exc:
                refusal = refusal or exc
                selection = selection.without(d, "endpoint refused")
    if not selection.chain:
        assert refusal is not None
        raise refusal
    return selection


async def spent(
    app: LlmApp, call: Call, prepared: Prepared, served: Deployment, metered: usage.Metered
) -> None:
    """What the deployment that answered spent, into its provider's window (budgets.py) and the
    org's window of its model (limits.py) at once: two documents, two writes in flight together."""
    assert prepared.windows is not None, "spent after admit"
    await asyncio.gather(
        budgets.spent(prepared.windows, prepared.reserved, served, metered.tokens, limits.now()),
        limits.spent(call.store, served.model, metered.tokens),
    )


def attribution(prepared: Prepared, hidden: dict[str, Any] | None) -> tuple[Deployment, list[dict[str, Any]]]:
    """Which deployment served (the Router's `model_id`) and the ones tried before it, in order."""
    hidden = hidden or {}
    selection = prepared.selection
    at = prepared.routed.position(selection, hidden.get("model_id"))
    headers = hidden.get("additional_headers") or {}
    raw = headers.get("x-litellm-fallback-errors") or "[]"
    try:
        errors = json.loads(raw) if isinstance(raw, str) else list(raw)
    except ValueError:
        errors = []
    skipped = [
        {"provider": d.provider.name, "model": d.model.name, "status": why} for d, why in selection.skipped
    ]
    tried = [
        {"provider": d.provider.name, "model": d.model.name, "status": (e or {}).get("code")}
        for d, e in zip_longest(selection.chain[:at], errors[:at])
        if d is not None
    ]
    return selection.chain[at], skipped + tried


def failed(app: LlmApp, call: Call, selection: Selection, exc: Exception) -> MeshException:
    labels = [d.label for d, _ in selection.skipped] + [d.label for d in selection.chain]
    app.stats["provider_failures"] += 1
    status = getattr(exc, "status_code", None)
    log.warning(
        "llm providers failed", model=selection.model, tried=labels, error=type(exc).__name__, status=status
    )
    return provider_error(exc, selection.model, labels)


def _served(d: Deployment, tried: list[dict[str, Any]], selection: Selection) -> dict[str, Any]:
    return {
        "model": d.model.name,
        "requested": selection.requested,
        "provider": d.provider.name,
        "served_by": d.label,
        "fallbacks_tried": tried,
    }


async def chat(
    app: LlmApp,
    call: Call,
    request: dict[str, Any],
    *,
    model: str | None,
    use_cache: bool,
    on_token: OnToken | None,
) -> dict[str, Any]:
    prepared = await prepare(app, call, model, "chat")
    selection = prepared.selection
    key = (
        cache.cache_key("chat", selection.model, request)
        if use_cache and app.settings.cache_ttl_s > 0
        else None
    )
    if key is not None:
        hit = (await cache.get_many(call.store, [key])).get(key)
        if hit is not None:
            app.stats["cache_hits"] += 1
            if on_token is not None and hit.get("content"):
                await on_token(hit["content"])
            served = selection.chain[0]
            figures = usage.record(call, app.buckets, served, usage.Metered(), cache_hit=True)
            return {**hit, "cached": True, "usage": figures}
        app.stats["cache_misses"] += 1
    prepared = await admit(app, call, prepared)
    selection = prepared.selection
    app.stats["provider_calls"] += 1
    try:
        if on_token is None:
            response = await prepared.routed.router.acompletion(**request, **prepared.routed.route(selection))
            hidden = getattr(response, "_hidden_params", {})
        else:
            response, hidden = await _streamed(prepared, request, on_token)
    except MeshException:
        raise
    except Exception as exc:
        raise failed(app, call, selection, exc) from None
    served, tried = attribution(prepared, hidden)
    choice = response.choices[0]
    message = choice.message
    answer = {
        "content": message.content,
        "tool_calls": [t.model_dump() for t in message.tool_calls] if message.tool_calls else None,
        "finish_reason": choice.finish_reason,
        **_served(served, tried, selection),
    }
    metered = usage.meter(served, getattr(response, "usage", None))
    await spent(app, call, prepared, served, metered)
    figures = usage.record(call, app.buckets, served, metered)
    if key is not None and served.model.name == selection.model:
        await cache.put_many(call.store, {key: answer}, app.settings.cache_ttl_s)
    return {**answer, "cached": False, "usage": figures}


async def _streamed(
    prepared: Prepared, request: dict[str, Any], on_token: OnToken
) -> tuple[Any, dict[str, Any]]:
    routed = prepared.routed
    stream = await routed.router.acompletion(
        **request, **routed.route(prepared.selection), stream=True, stream_options={"include_usage": True}
    )
    chunks: list[Any] = []
    provider_usage = None
    async for chunk in stream:
        chunks.append(chunk)
        if getattr(chunk, "usage", None) is not None:
            provider_usage = chunk.usage
        delta = chunk.choices[0].delta.content if chunk.choices else None
        if delta:
            await on_token(delta)
    response: Any = litellm.stream_chunk_builder(chunks, messages=request.get("messages"))
    if provider_usage is not None:
        response.usage = provider_usage
    return response, dict(getattr(stream, "_hidden_params", {}) or {})


async def embed(
    app: LlmApp, call: Call, texts: list[str], *, model: str | None, use_cache: bool
) -> dict[str, Any]:
    prepared = await prepare(app, call, model, "embedding")
    selection = prepared.selection
    caching = use_cache and app.settings.cache_ttl_s > 0
    keys = [cache.cache_key("embed", selection.model, t) for t in texts]
    found = await cache.get_many(call.store, sorted(set(keys))) if caching else {}
    app.stats["cache_hits"] += sum(1 for k in keys if k in found)
    missing = [i for i, k in enumerate(keys) if k not in found]
    app.stats["cache_misses"] += len(missing) if caching else 0
    vectors: dict[int, list[float]] = {i: found[k] for i, k in enumerate(keys) if k in found}
    served: Deployment = selection.chain[0]
    tried: list[dict[str, Any]] = []
    batch = app.settings.embed_batch
    if missing:
        prepared = await admit(app, call, prepared)
        selection = prepared.selection
    for start in range(0, len(missing), batch):
        part = missing[start : start + batch]
        app.stats["provider_calls"] += 1
        try:
            response = await prepared.routed.router.aembedding(
                input=[texts[i] for i in part], **prepared.routed.route(selection)
            )
        except Exception as exc:
            raise failed(app, call, selection, exc) from None
        served, tried = attribution(prepared, getattr(response, "_hidden_params", {}))
        fresh = {part[item["index"]]: item["embedding"] for item in response.data}
        vectors.update(fresh)
        metered = usage.meter(served, getattr(response, "usage", None))
        await spent(app, call, prepared, served, metered)
        prepared = dataclasses.replace(prepared, reserved=None)  # each further batch is a request
        usage.record(call, app.buckets, served, metered)
        if caching and served.model.name == selection.model:
            await cache.put_many(call.store, {keys[i]: v for i, v in fresh.items()}, app.settings.cache_ttl_s)
    if not missing:
        usage.record(call, app.buckets, served, usage.Metered(), cache_hit=True)
    ordered = [vectors[i] for i in range(len(texts))]
    return {
        "vectors": ordered,
        "dimensions": len(ordered[0]) if ordered else 0,
        "cached": len(texts) - len(missing),
        **_served(served, tried, selection),
        "usage": dict(call.usage),
    }
