"""API keys in the `api_keys` control collection. Only a peppered hash of a secret is stored.

A row: `{key_id, org_id, name, scopes, tags, hash, previous, status, created_at, expires_at,
last_used_at, rotated_at}` (`tags`: labels signed into the key's stamps; absent on rows
written before tags existed, which means none). `status` is `active`, `suspended` or `revoked`; `previous`
lists `{hash, valid_until}` of secrets replaced by a rotation and still inside their
grace period. A rotation keeps the key id (usage and audit stay on one key).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from mcpmesh.gateway.control.bulk import Update, update_each
from mcpmesh.gateway.control.validation import aware, iso, now
from mcpmesh.store import Store
from mcpmesh.tenancy.apikeys import hash_api_key, new_api_key, parse_api_key

ACTIVE, SUSPENDED, REVOKED = "active", "suspended", "revoked"
_HIDDEN = {"_id": 0, "hash": 0, "previous": 0}


def key_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """What the admin API shows for a key: never its secret or hash."""
    expires_at = row.get("expires_at")
    status = row["status"]
    if status == ACTIVE and expires_at is not None and aware(expires_at) <= now():
        status = "expired"
    return {
        "id": row["key_id"],
        "org_id": row["org_id"],
        "name": row["name"],
        "scopes": list(row["scopes"]),
        "tags": list(row.get("tags") or []),
        "status": status,
        "created_at": iso(row.get("created_at")),
        "expires_at": iso(expires_at),
        "last_used_at": iso(row.get("last_used_at")),
        "rotated_at": iso(row.get("rotated_at")),
    }


def _secret_for(key_id: str) -> str:
    """A fresh secret for an existing key id (same `mm_<id>_<secret>` shape as new_api_key)."""
    raw = f"mm_{key_id.removeprefix('key-')}_{secrets.token_urlsafe(32)}"
    if parse_api_key(raw) != key_id:  # the shape is the tenancy library's: fail loudly if it moves
        raise RuntimeError("API key format changed: update _secret_for")
    return raw


class KeyRegistry:
    def __init__(self, store: Store, pepper: bytes) -> None:
        self.store = store
        self.pepper = pepper

    async def _rows(self) -> Any:
        return await self.store.control("api_keys")

    def digest(self, raw: str) -> str:
        return hash_api_key(raw, self.pepper)

    async def create(
        self,
        org_id: str,
        name: str,
        scopes: list[str],
        expires_at: datetime | None,
        tags: list[str] | None = None,
    ) -> tuple[dict[str, Any], str]:
        key = new_api_key()
        row = {
            "key_id": key.key_id,
            "org_id": org_id,
            "name": name,
            "scopes": scopes,
            "tags": tags or [],
            "hash": self.digest(key.secret),
            "previous": [],
            "status": ACTIVE,
            "created_at": now(),
            "expires_at": expires_at,
            "last_used_at": None,
            "rotated_at": None,
        }
        await (await self._rows()).insert_one(dict(row))
        return row, key.secret

    async def get(self, key_id: str, *, with_hashes: bool = False) -> dict[str, Any] | None:
        projection = {"_id": 0} if with_hashes else _HIDDEN
        row: dict[str, Any] | None = await (await self._rows()).find_one({"key_id": key_id}, projection)
        return row

    async def of_org(self, org_id: str) -> list[dict[str, Any]]:
        cursor = (await self._rows()).find({"org_id": org_id}, _HIDDEN).sort("created_at", 1)
        return [row async for row in cursor]

    async def rotate(self, key_id: str, grace_s: float) -> tuple[dict[str, Any], str] | None:
        """A new secret; the current one stays valid for `grace_s` seconds (0: refused at once)."""
        rows = await self._rows()
        row = await self.get(key_id, with_hashes=True)
        if row is None:
            return None
        stamp = now()
        secret = _secret_for(key_id)
        kept = [p for p in row.get("previous") or [] if aware(p["valid_until"]) > stamp]
        if grace_s > 0:
            kept.append({"hash": row["hash"], "valid_until": stamp + timedelta(seconds=grace_s)})
        await rows.update_one(
            {"key_id": key_id},
            {"$set": {"hash": self.digest(secret), "previous": kept, "rotated_at": stamp}},
        )
        fresh = await self.get(key_id)
        assert fresh is not None
        return fresh, secret

    async def set_status(self, key_id: str, status: str) -> None:
        changes: dict[str, Any] = {"status": status}
        if status == REVOKED:  # a revoked key is refused for good: its old secrets go too
            changes["previous"] = []
        await (await self._rows()).update_one({"key_id": key_id}, {"$set": changes})

    async def revoke_org(self, org_id: str) -> list[str]:
        rows = await self._rows()
        ids = [row["key_id"] async for row in rows.find({"org_id": org_id}, {"key_id": 1})]
        await rows.update_many({"org_id": org_id}, {"$set": {"status": REVOKED, "previous": []}})
        return ids

    async def touch(self, last_used: Mapping[str, datetime]) -> None:
        """Record when keys were last used (never moves a time backwards): one bulk write of
        one conditional update per key used since the last flush."""
        if not last_used:
            return
        rows = await self._rows()
        updates = [
            Update(
                {"key_id": key_id, "$or": [{"last_used_at": None}, {"last_used_at": {"$lt": used_at}}]},
                {"$set": {"last_used_at": used_at}},
            )
            for key_id, used_at in last_used.items()
        ]
        await update_each(rows, updates)
