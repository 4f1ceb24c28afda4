"""Organizations in the `tenants` control collection, and their settings in NATS KV.

A row: `{org_id, name, tier, status, overrides, created_at, updated_at}` where
`status` is `active`, `suspended` or `deleting` (a delete that did not finish) and
`overrides` holds only the settings the org sets itself; the effective settings are
the tier defaults overlaid with them (`validation.effective_settings`).
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import msgspec

from mcpmesh.bus import Bus
from mcpmesh.gateway.control.validation import effective_settings, iso, now
from mcpmesh.proto.ids import validate_org_id
from mcpmesh.proto.tiers import ORG_SETTINGS_BUCKET, OrgSettings
from mcpmesh.store import Store

ACTIVE, SUSPENDED, DELETING = "active", "suspended", "deleting"


def new_org_id(name: str) -> str:
    """`org-<slug of the name>-<6 hex>`, always a valid org id."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:24].strip("-")
    suffix = secrets.token_hex(3)
    return validate_org_id(f"org-{slug}-{suffix}" if slug else f"org-{suffix}")


def org_view(row: dict[str, Any]) -> dict[str, Any]:
    """What the admin API shows for an org."""
    return {
        "id": row["org_id"],
        "name": row["name"],
        "tier": row["tier"],
        "status": row["status"],
        "settings": msgspec.to_builtins(effective_settings(row["tier"], row.get("overrides") or {})),
        "overrides": row.get("overrides") or {},
        "created_at": iso(row.get("created_at")),
        "updated_at": iso(row.get("updated_at")),
    }


class OrgRegistry:
    def __init__(self, store: Store, bus: Bus) -> None:
        self.store = store
        self.bus = bus

    async def _rows(self) -> Any:
        return await self.store.control("tenants")

    async def create(self, name: str, tier: str, overrides: dict[str, Any]) -> dict[str, Any]:
        stamp = now()
        row = {
            "org_id": new_org_id(name),
            "name": name,
            "tier": tier,
            "status": ACTIVE,
            "overrides": overrides,
            "created_at": stamp,
            "updated_at": stamp,
        }
        await (await self._rows()).insert_one(dict(row))
        await self.publish_settings(row)
        return row

    async def get(self, org_id: str) -> dict[str, Any] | None:
        row: dict[str, Any] | None = await (await self._rows()).find_one({"org_id": org_id}, {"_id": 0})
        return row

    async def page(self, limit: int, after: str | None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"org_id": {"$gt": after}} if after else {}
        cursor = (await self._rows()).find(query, {"_id": 0}).sort("org_id", 1).limit(limit)
        return [row async for row in cursor]

    async def update(self, org_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        rows = await self._rows()
        await rows.update_one({"org_id": org_id}, {"$set": {**changes, "updated_at": now()}})
        row = await self.get(org_id)
        if row is not None and {"tier", "overrides"} & set(changes):
            await self.publish_settings(row)
        return row

    async def set_status(self, org_id: str, status: str) -> None:
        await (await self._rows()).update_one(
            {"org_id": org_id}, {"$set": {"status": status, "updated_at": now()}}
        )

    async def publish_settings(self, row: dict[str, Any]) -> OrgSettings:
        """Put the org's effective settings into KV `ORG_SETTINGS` (key = org id) for services."""
        settings = effective_settings(row["tier"], row.get("overrides") or {})
        kv = await self.bus.kv(ORG_SETTINGS_BUCKET)
        await kv.put(validate_org_id(row["org_id"]), msgspec.json.encode(settings))
        return settings

    async def forget_settings(self, org_id: str) -> None:
        kv = await self.bus.kv(ORG_SETTINGS_BUCKET)
        await kv.purge(validate_org_id(org_id))
