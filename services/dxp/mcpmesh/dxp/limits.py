"""Client-side request limits per project (30/min, 500/h by default), counted in the org's
store so every replica shares them: one counter document per project and window, its `_id`
naming the window, expiring after it (TTL)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.store import Index, TenantStore

RATES: Final = "rates"
KINDS: Final = {RATES: [Index(keys=[("expires_at", 1)], expire_after_seconds=0)]}
WINDOWS: Final = (("minute", 60), ("hour", 3600))


def _windows(project_id: str, now: float) -> list[tuple[str, int, float]]:
    """(counter id, window seconds, window end) of each window `now` falls in."""
    return [
        (f"{project_id}:{name}:{int(now // span)}", span, (now // span + 1) * span) for name, span in WINDOWS
    ]


async def _bump(collection: Any, counter_id: str, by: int, expires: datetime) -> int:
    for _ in range(2):  # two replicas creating the same counter at once: one insert loses, retry
        try:
            doc = await collection.find_one_and_update(
                {"_id": counter_id},
                {"$inc": {"n": by}, "$setOnInsert": {"expires_at": expires}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
            return int(doc["n"])
        except DuplicateKeyError:
            continue
    raise MeshException(
        ErrorCode.UNAVAILABLE, "the request counter is busy: retry in a second", retryable=True
    )


async def take(store: TenantStore, project_id: str, limits: tuple[int, int], project: str) -> None:
    """Count one request of the project; `rate_limited` (nothing counted) past a limit."""
    collection = await store.collection(RATES)
    now = time.time()
    taken: list[str] = []
    for (counter_id, _, end), limit, (per, _) in zip(_windows(project_id, now), limits, WINDOWS, strict=True):
        expires = datetime.fromtimestamp(end, UTC) + timedelta(seconds=60)
        n = await _bump(collection, counter_id, 1, expires)
        taken.append(counter_id)
        if n > limit:
            for done in taken:
                await collection.update_one({"_id": done}, {"$inc": {"n": -1}})
            wait = max(1, round(end - now))
            raise MeshException(
                ErrorCode.RATE_LIMITED,
                f"project {project!r} reached its limit of {limit} DXP requests per {per}: retry in {wait} s",
                retryable=True,
                details={"retry_after_s": wait, "limit": limit, "per": per},
            )


async def status(store: TenantStore, project_id: str, limits: tuple[int, int]) -> dict[str, Any]:
    """The project's requests in the current minute and hour, against the limits."""
    collection = await store.collection(RATES)
    now = time.time()
    out: dict[str, Any] = {}
    for (counter_id, _, end), limit, (name, _) in zip(
        _windows(project_id, now), limits, WINDOWS, strict=True
    ):
        doc = await collection.find_one({"_id": counter_id})
        used = int(doc["n"]) if doc else 0
        out[name] = {
            "used": used,
            "limit": limit,
            "remaining": max(0, limit - used),
            "resets_in_s": round(end - now),
        }
    return out
