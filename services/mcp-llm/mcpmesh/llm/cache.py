"""Exact-match caches in the org's own store (never shared across orgs): chat answers of
deterministic requests, and embeddings per text. Keys: the resolved model and the normalized
request (sorted JSON), hashed; entries expire after LLM_CACHE_TTL_S (TTL index)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec

from mcpmesh.store import Index, TenantStore

CACHE_KIND: Final = "llm_cache"
CACHE_INDEXES: Final = [Index(keys=[("expire_at", 1)], expire_after_seconds=0)]


def cache_key(kind: str, model: str, request: Any) -> str:
    """kind (chat | embed) + resolved model + the request as canonical JSON, hashed."""
    canonical = msgspec.json.encode({"kind": kind, "model": model, "request": request}, order="sorted")
    return f"{kind}:{hashlib.sha256(canonical).hexdigest()}"


def wanted(cache: bool | None, temperature: float | None) -> bool:
    """Cache a chat answer when asked to, or when the request is deterministic (temperature 0)."""
    return cache if cache is not None else temperature == 0


async def get_many(store: TenantStore, keys: list[str]) -> dict[str, Any]:
    rows = await store.collection(CACHE_KIND)
    now = datetime.now(UTC)
    found: dict[str, Any] = {}
    async for doc in rows.find({"_id": {"$in": keys}}):
        expire_at = doc["expire_at"]
        if expire_at.tzinfo is None:
            expire_at = expire_at.replace(tzinfo=UTC)
        if expire_at > now:  # the TTL monitor runs about once a minute: expired rows may linger
            found[doc["_id"]] = doc["value"]
    return found


async def put_many(store: TenantStore, values: dict[str, Any], ttl_s: float) -> None:
    if not values or ttl_s <= 0:
        return
    rows = await store.collection(CACHE_KIND)
    expire_at = datetime.now(UTC) + timedelta(seconds=ttl_s)
    for key, value in values.items():
        await rows.replace_one({"_id": key}, {"value": value, "expire_at": expire_at}, upsert=True)
