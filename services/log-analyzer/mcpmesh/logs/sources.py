"""Log sources of an org: a container SAS URL (kept sealed) + a blob name prefix.

The `sources` collection holds what may be shown (name, where the container is, prefix, the
SAS expiry, a fingerprint); the URL itself is a tenant secret (the service's `secrets` (kit: `call.secrets`, `job.secrets`)), revealed only to
read the container. Nothing here ever returns or logs it.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from pymongo import ReturnDocument

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.secrets import InvalidSecret, SecretValue, TenantSecrets
from mcpmesh.store import Index, TenantStore

SOURCES: Final = "sources"
KINDS: Final = {SOURCES: [Index(keys=[("name", 1)], unique=True)]}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ID = re.compile(r"^src-[0-9a-f]{16}$")
PREFIX_MAX: Final = 1024


def _bad(message: str) -> MeshException:
    return MeshException(ErrorCode.INVALID_REQUEST, message)


def check_sas_url(url: str, *, allow_http: bool, now: datetime) -> tuple[str, datetime | None]:
    """(where the container is: host/account/container, the SAS expiry) of a container SAS
    URL; `invalid_request` naming what is wrong (never echoing the URL)."""
    parts = urlsplit(url.strip())
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes or not parts.hostname:
        raise _bad(
            f"sas_url must be an {' or '.join(schemes)} container SAS URL, such as "
            "https://<account>.blob.core.windows.net/<container>?sv=...&sig=..."
        )
    container = parts.path.strip("/")
    if not container:
        raise _bad("sas_url names no container: it must be a container SAS URL (…/<container>?sv=…&sig=…)")
    query = parse_qs(parts.query)
    if "sig" not in query:
        raise _bad(
            "sas_url carries no SAS token (no 'sig' in its query): generate a container SAS with read and list permission"
        )
    expires = None
    if "se" in query:
        try:
            expires = datetime.fromisoformat(query["se"][0].replace("Z", "+00:00"))
            expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
        except ValueError:
            raise _bad("sas_url's expiry (se) is not a valid time") from None
        if expires <= now:
            raise _bad(
                f"the SAS URL expired at {expires.isoformat()}: generate a fresh one and add the source again"
            )
    return f"{parts.hostname}{f':{parts.port}' if parts.port else ''}/{container}", expires


def _view(doc: dict[str, Any]) -> dict[str, Any]:
    expires = doc.get("sas_expires_at")
    return {
        "source_id": doc["_id"],
        "name": doc["name"],
        "location": doc["location"],
        "prefix": doc["prefix"],
        "sas_expires_at": expires.replace(tzinfo=UTC).isoformat() if expires else None,
        "sas_fingerprint": doc["fingerprint"],
        "created_at": doc["created_at"].replace(tzinfo=UTC).isoformat(),
        "updated_at": doc["updated_at"].replace(tzinfo=UTC).isoformat(),
    }


async def add(
    store: TenantStore, vault: TenantSecrets, *, name: str, sas_url: str, prefix: str, allow_http: bool
) -> dict[str, Any]:
    """Add a source, or replace the one of that name (its id stays)."""
    if not _NAME.fullmatch(name):
        raise _bad("name must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
    if len(prefix) > PREFIX_MAX:
        raise _bad(f"prefix must be at most {PREFIX_MAX} characters")
    now = datetime.now(UTC)
    location, expires = check_sas_url(sas_url, allow_http=allow_http, now=now)
    collection = await store.collection(SOURCES)
    existing = await collection.find_one({"name": name}, {"_id": 1})
    source_id = existing["_id"] if existing else f"src-{secrets.token_hex(8)}"
    try:
        info = await vault.put(secret_name(source_id), sas_url.strip())
    except InvalidSecret:
        raise _bad("sas_url must be a non-empty URL of at most 16384 characters") from None
    doc = await collection.find_one_and_update(
        {"name": name},
        {
            "$set": {
                "location": location,
                "prefix": prefix,
                "sas_expires_at": expires,
                "fingerprint": info.fingerprint,
                "updated_at": now,
            },
            "$setOnInsert": {"_id": source_id, "created_at": now},
        },
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )
    assert doc is not None
    return _view(doc)


async def listing(store: TenantStore) -> list[dict[str, Any]]:
    collection = await store.collection(SOURCES)
    return [_view(doc) async for doc in collection.find({}).sort("name", 1).limit(1000)]


async def get(store: TenantStore, source_id: str) -> dict[str, Any]:
    if not isinstance(source_id, str) or not _ID.fullmatch(source_id):
        raise _bad("source_id must look like src-0123456789abcdef (see the sources tool)")
    doc = await (await store.collection(SOURCES)).find_one({"_id": source_id})
    if doc is None:
        raise MeshException(ErrorCode.NOT_FOUND, f"no source {source_id} in your organization")
    return doc


async def sas_url(vault: TenantSecrets, source_id: str) -> SecretValue:
    value = await vault.reveal(secret_name(source_id))
    if value is None:
        raise MeshException(ErrorCode.NOT_FOUND, f"source {source_id} has no SAS URL kept: add it again")
    return value


async def remove(store: TenantStore, vault: TenantSecrets, source_id: str) -> dict[str, Any]:
    await get(store, source_id)
    await vault.delete(secret_name(source_id))
    result = await (await store.collection(SOURCES)).delete_one({"_id": source_id})
    return {"source_id": source_id, "removed": result.deleted_count == 1}


def view(doc: dict[str, Any]) -> dict[str, Any]:
    return _view(doc)


def secret_name(source_id: str) -> str:
    """The name a source's SAS URL is kept under in the org's secrets."""
    return f"source.{source_id}"
