"""Per org, per model: requests and tokens per minute (`org_rpm`, `org_tpm` on a model in the
provider table), on top of the gateway's per-key limits. Counted in the org's own store, so
every replica sees the same counts: one fixed window per minute, one document per model and
minute (`<model>|<minute>`, expiring with a TTL index; budgets.py keeps the org providers'
rpm/tpm windows there too)."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from mcpmesh.llm.providers import ModelSpec
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.store import Index, TenantStore

LIMITS_KIND: Final = "llm_limits"
LIMITS_INDEXES: Final = [Index(keys=[("expire_at", 1)], expire_after_seconds=0)]


def now() -> float:
    """The clock of the windows (tests pin it so a minute cannot turn during one)."""
    return time.time()


def _window(model: str, now: float) -> tuple[str, int]:
    minute = int(now // 60)
    return f"{model}|{minute}", int(60 - now % 60) + 1


async def admit(store: TenantStore, model: ModelSpec) -> None:
    """Count one request against the model's per-org limits; RATE_LIMITED when over either."""
    if model.org_rpm is None and model.org_tpm is None:
        return
    key, retry_after = _window(model.name, now())
    doc = await add(store, key, requests=1)
    over = None
    if model.org_rpm is not None and doc["requests"] > model.org_rpm:
        over = f"{model.org_rpm} requests per minute"
    elif model.org_tpm is not None and doc["tokens"] >= model.org_tpm:
        over = f"{model.org_tpm} tokens per minute"
    if over is not None:
        await add(store, key, requests=-1)  # a refused call is not counted
        raise MeshException(
            ErrorCode.RATE_LIMITED,
            f"your organization has used its {over} of model {model.name!r}: retry in {retry_after} s",
            details={"model": model.name, "retry_after_s": retry_after},
        )


async def spent(store: TenantStore, model: ModelSpec, tokens: int) -> None:
    """Add a served call's tokens to the model's current window (only for a model with org_tpm)."""
    if model.org_tpm is None or not tokens:
        return
    key, _ = _window(model.name, now())
    await add(store, key, tokens=tokens)


async def add(store: TenantStore, key: str, *, requests: int = 0, tokens: int = 0) -> dict[str, Any]:
    """Add to the window document `key`, created first when missing (upserts that also count,
    racing across replicas, are not safe on every store); the document after the addition."""
    rows = await store.collection(LIMITS_KIND)
    increment = {"$inc": {"requests": requests, "tokens": tokens}}
    doc = await rows.find_one_and_update({"_id": key}, increment, return_document=ReturnDocument.AFTER)
    if doc is None:
        fresh = {"requests": 0, "tokens": 0, "expire_at": datetime.now(UTC) + timedelta(seconds=120)}
        with contextlib.suppress(DuplicateKeyError):  # another replica created it meanwhile
            await rows.update_one({"_id": key}, {"$setOnInsert": fresh}, upsert=True)
        doc = await rows.find_one_and_update({"_id": key}, increment, return_document=ReturnDocument.AFTER)
    assert doc is not None
    return dict(doc)
