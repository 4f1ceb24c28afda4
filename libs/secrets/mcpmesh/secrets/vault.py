"""One org's secrets, kept sealed in its own `<org>__secrets` collection.

Write-only by design: `put`, `info` and `infos` describe a secret by fingerprint and last
four characters; only `reveal` returns the value, as a `SecretValue` that prints masked,
for the service to hand to the upstream that needs it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from pymongo import ReturnDocument

from mcpmesh.secrets.envelope import Sealed, open_sealed, rewrap, seal
from mcpmesh.secrets.keys import MasterKeys
from mcpmesh.store import Index, TenantStore

#: The store kind holding sealed secrets; declare it with `SECRETS_KINDS` in a service's Store.
SECRETS_KIND: Final = "secrets"
SECRETS_KINDS: Final[dict[str, list[Index]]] = {SECRETS_KIND: []}

MAX_SECRET_CHARS: Final = 16_384
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_SHOWN_TAIL = 4
_MIN_LEN_TO_SHOW_TAIL = 16  # a short secret's last four characters would give too much away


class InvalidSecret(ValueError):
    """A secret name or value that cannot be stored; the message never contains the value."""


class SecretValue:
    """A revealed secret: `str()`, `repr()` and f-strings show it masked; `.reveal()` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretValue('****')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretValue) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class SecretInfo:
    """Everything a caller may ever read back about a secret."""

    name: str
    fingerprint: str  # "sha256:" + 16 hex digits of SHA-256(org, value): tells two values apart
    last4: str | None  # None for short values
    key_id: str
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "last4": self.last4,
            "key_id": self.key_id,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def validate_secret_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InvalidSecret(
            "a secret name is 1-64 lowercase letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return name


def _fingerprint(org_id: str, value: str) -> str:
    return "sha256:" + hashlib.sha256(f"{org_id}\0{value}".encode()).hexdigest()[:16]


def _info(doc: dict[str, Any]) -> SecretInfo:
    return SecretInfo(
        name=doc["_id"],
        fingerprint=doc["fingerprint"],
        last4=doc.get("last4"),
        key_id=doc["kid"],
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
    )


class TenantSecrets:
    """The secrets of the org a `TenantStore` is scoped to; there is no way to name another org."""

    def __init__(self, tenant: TenantStore, keys: MasterKeys) -> None:
        self._tenant = tenant
        self._keys = keys

    @property
    def org_id(self) -> str:
        return self._tenant.org_id

    async def put(self, name: str, value: str) -> SecretInfo:
        """Store (or replace) a secret; returns what may be shown of it."""
        validate_secret_name(name)
        if not isinstance(value, str) or not value.strip():
            raise InvalidSecret(f"secret {name!r} must be a non-empty string")
        if len(value) > MAX_SECRET_CHARS:
            raise InvalidSecret(f"secret {name!r} is longer than {MAX_SECRET_CHARS} characters")
        sealed = seal(self._keys, self.org_id, name, value)
        now = datetime.now(UTC)
        fields = {
            "kid": sealed.kid,
            "wrapped_key": sealed.wrapped_key,
            "ciphertext": sealed.ciphertext,
            "fingerprint": _fingerprint(self.org_id, value),
            "last4": value[-_SHOWN_TAIL:] if len(value) >= _MIN_LEN_TO_SHOW_TAIL else None,
            "updated_at": now,
        }
        collection = await self._tenant.collection(SECRETS_KIND)
        doc = await collection.find_one_and_update(
            {"_id": name},
            {"$set": fields, "$setOnInsert": {"created_at": now}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert doc is not None
        return _info(doc)

    async def info(self, name: str) -> SecretInfo | None:
        doc = await (await self._tenant.collection(SECRETS_KIND)).find_one(
            {"_id": validate_secret_name(name)}
        )
        return None if doc is None else _info(doc)

    async def infos(self) -> list[SecretInfo]:
        collection = await self._tenant.collection(SECRETS_KIND)
        return sorted([_info(doc) async for doc in collection.find({})], key=lambda info: info.name)

    async def reveal(self, name: str) -> SecretValue | None:
        """The value, for the service's own use (an upstream call); never return it to a client."""
        doc = await (await self._tenant.collection(SECRETS_KIND)).find_one(
            {"_id": validate_secret_name(name)}
        )
        if doc is None:
            return None
        sealed = Sealed(kid=doc["kid"], wrapped_key=doc["wrapped_key"], ciphertext=doc["ciphertext"])
        return SecretValue(open_sealed(self._keys, self.org_id, name, sealed))

    async def delete(self, name: str) -> bool:
        result = await (await self._tenant.collection(SECRETS_KIND)).delete_one(
            {"_id": validate_secret_name(name)}
        )
        return result.deleted_count == 1

    async def rewrap(self) -> int:
        """Re-wrap every data key not under the active master key; returns how many moved."""
        collection = await self._tenant.collection(SECRETS_KIND)
        moved = 0
        async for doc in collection.find({"kid": {"$ne": self._keys.active}}):
            old = Sealed(kid=doc["kid"], wrapped_key=doc["wrapped_key"], ciphertext=doc["ciphertext"])
            new = rewrap(self._keys, self.org_id, doc["_id"], old)
            result = await collection.update_one(
                {"_id": doc["_id"], "kid": old.kid, "wrapped_key": old.wrapped_key},
                {"$set": {"kid": new.kid, "wrapped_key": new.wrapped_key}},
            )
            moved += result.modified_count
        return moved
