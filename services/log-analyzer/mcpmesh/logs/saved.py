"""Saved analyses of an org (`analyses`) and the partial states of running source jobs (`partials`)."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Any, Final

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.store import Index, TenantStore

ANALYSES: Final = "analyses"
PARTIALS: Final = "partials"
KINDS: Final = {
    ANALYSES: [Index(keys=[("created_at", -1)])],
    # A job's merged state so far, so a resumed run carries on; removed when the job ends.
    PARTIALS: [Index(keys=[("updated_at", 1)], expire_after_seconds=7 * 24 * 3600)],
}
_ID = re.compile(r"^an-[0-9a-f]{16}$")


async def save(store: TenantStore, *, name: str, origin: dict[str, Any], report: dict[str, Any]) -> str:
    analysis_id = f"an-{secrets.token_hex(8)}"
    await (await store.collection(ANALYSES)).insert_one(
        {
            "_id": analysis_id,
            "name": name,
            "origin": origin,
            "report": report,
            "created_at": datetime.now(UTC),
        }
    )
    return analysis_id


def _summary(doc: dict[str, Any]) -> dict[str, Any]:
    report = doc["report"]
    return {
        "analysis_id": doc["_id"],
        "name": doc["name"],
        "origin": doc["origin"],
        "created_at": doc["created_at"].replace(tzinfo=UTC).isoformat(),
        "requests": report["requests"],
        "error_rate": report["error_rate"],
        "p95_ms": report["latency_ms"].get("p95"),
        "health": report["health"],
        "time_range": report["time_range"],
    }


async def get(store: TenantStore, analysis_id: str) -> dict[str, Any]:
    if not isinstance(analysis_id, str) or not _ID.fullmatch(analysis_id):
        raise MeshException(
            ErrorCode.INVALID_REQUEST, "analysis_id must look like an-0123456789abcdef (see analyses)"
        )
    doc = await (await store.collection(ANALYSES)).find_one({"_id": analysis_id})
    if doc is None:
        raise MeshException(ErrorCode.NOT_FOUND, f"no saved analysis {analysis_id} in your organization")
    return doc


async def show(store: TenantStore, analysis_id: str) -> dict[str, Any]:
    doc = await get(store, analysis_id)
    return {**_summary(doc), "report": doc["report"]}


async def listing(store: TenantStore, limit: int) -> list[dict[str, Any]]:
    if not 1 <= limit <= 100:
        raise MeshException(ErrorCode.INVALID_REQUEST, "limit must be 1-100")
    collection = await store.collection(ANALYSES)
    return [_summary(doc) async for doc in collection.find({}).sort("created_at", -1).limit(limit)]


async def delete(store: TenantStore, analysis_id: str) -> dict[str, Any]:
    await get(store, analysis_id)
    result = await (await store.collection(ANALYSES)).delete_one({"_id": analysis_id})
    return {"analysis_id": analysis_id, "deleted": result.deleted_count == 1}


async def save_partial(store: TenantStore, job_id: str, state: dict[str, Any]) -> None:
    await (await store.collection(PARTIALS)).replace_one(
        {"_id": job_id}, {"_id": job_id, "state": state, "updated_at": datetime.now(UTC)}, upsert=True
    )


async def load_partial(store: TenantStore, job_id: str) -> dict[str, Any] | None:
    doc = await (await store.collection(PARTIALS)).find_one({"_id": job_id})
    return None if doc is None else dict(doc["state"])


async def drop_partial(store: TenantStore, job_id: str) -> None:
    await (await store.collection(PARTIALS)).delete_one({"_id": job_id})
