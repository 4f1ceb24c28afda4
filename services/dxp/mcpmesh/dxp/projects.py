"""An org's DXP projects: name, project id, API URL and environments in the `projects`
collection; the client key and secret as tenant secrets (`project.<id>.key` / `.secret`),
write-only: nothing here returns or logs them."""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

from pymongo import ReturnDocument

from mcpmesh.dxp import signing
from mcpmesh.dxp.client import Project
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.secrets import InvalidSecret, TenantSecrets
from mcpmesh.store import Index, TenantStore

PROJECTS: Final = "projects"
KINDS: Final = {PROJECTS: [Index(keys=[("name", 1)], unique=True)]}
ENVIRONMENTS: Final = ("Integration", "Preproduction", "Production")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENV = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,63}$")


def _bad(message: str) -> MeshException:
    return MeshException(ErrorCode.INVALID_REQUEST, message)


def _secret_names(doc_id: str) -> tuple[str, str]:
    return f"project.{doc_id}.key", f"project.{doc_id}.secret"


def _check_url(url: str, allow_http: bool) -> str:
    parts = urlsplit(url.strip())
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes or not parts.hostname or parts.query or parts.fragment:
        raise _bad(
            f"api_url must be an {' or '.join(schemes)} URL such as https://paasportal.episerver.net/api/v1.0/"
        )
    return url.strip().rstrip("/") + "/"


def view(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": doc["name"],
        "project_id": doc["project_id"],
        "api_url": doc["api_url"],
        "environments": doc["environments"],
        "client_key_fingerprint": doc["key_fingerprint"],
        "created_at": doc["created_at"].replace(tzinfo=UTC).isoformat(),
        "updated_at": doc["updated_at"].replace(tzinfo=UTC).isoformat(),
    }


async def register(
    store: TenantStore,
    vault: TenantSecrets,
    *,
    name: str,
    project_id: str,
    client_key: str,
    client_secret: str,
    api_url: str,
    allow_http: bool,
    environments: list[str] | None,
) -> dict[str, Any]:
    """Register a project, or replace the one of that name."""
    if not _NAME.fullmatch(name):
        raise _bad("name must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
    try:
        project_id = str(uuid.UUID(project_id.strip()))
    except (ValueError, AttributeError):
        raise _bad("project_id must be the project's UUID, as the DXP portal's API page shows it") from None
    if not isinstance(client_key, str) or not client_key.strip() or len(client_key) > 256:
        raise _bad("client_key must be the API key's client key (non-empty text)")
    try:
        signing.decode_secret(client_secret)
    except signing.BadSecret as exc:
        raise _bad(str(exc)) from None
    envs = list(environments) if environments else list(ENVIRONMENTS)
    if len(envs) > 20 or not all(isinstance(e, str) and _ENV.fullmatch(e) for e in envs):
        raise _bad("environments must be up to 20 names such as Integration, Preproduction, Production")
    url = _check_url(api_url, allow_http)
    collection = await store.collection(PROJECTS)
    existing = await collection.find_one({"name": name}, {"_id": 1})
    doc_id = existing["_id"] if existing else f"prj-{secrets.token_hex(8)}"
    key_name, secret_name = _secret_names(doc_id)
    try:
        key_info = await vault.put(key_name, client_key.strip())
        await vault.put(secret_name, client_secret.strip())
    except InvalidSecret:
        raise _bad("client_key and client_secret must be non-empty text") from None
    now = datetime.now(UTC)
    doc = await collection.find_one_and_update(
        {"name": name},
        {
            "$set": {
                "project_id": project_id,
                "api_url": url,
                "environments": envs,
                "key_fingerprint": key_info.fingerprint,
                "updated_at": now,
            },
            "$setOnInsert": {"_id": doc_id, "created_at": now},
        },
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )
    assert doc is not None
    return view(doc)


async def listing(store: TenantStore) -> list[dict[str, Any]]:
    collection = await store.collection(PROJECTS)
    return [view(doc) async for doc in collection.find({}).sort("name", 1).limit(1000)]


async def find(store: TenantStore, name: str) -> dict[str, Any]:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _bad("project must be a registered project's name (see dxp_projects)")
    doc = await (await store.collection(PROJECTS)).find_one({"name": name})
    if doc is None:
        raise MeshException(
            ErrorCode.NOT_FOUND,
            f"no project {name!r} in your organization: register it with dxp_project_register",
        )
    return doc


async def load(store: TenantStore, vault: TenantSecrets, name: str) -> tuple[Project, dict[str, Any]]:
    """The project with its credentials revealed (for signing only) and its document."""
    doc = await find(store, name)
    key_name, secret_name = _secret_names(doc["_id"])
    key, secret = await vault.reveal(key_name), await vault.reveal(secret_name)
    if key is None or secret is None:
        raise MeshException(
            ErrorCode.NOT_FOUND, f"project {name!r} has no credentials kept: register it again"
        )
    return Project(name, doc["project_id"], doc["api_url"], key, secret), doc


def environment(doc: dict[str, Any], env: str) -> str:
    """`env` when the project has it; else `invalid_request` naming the project's environments."""
    if env not in doc["environments"]:
        raise _bad(
            f"environment {env!r} is not one of project {doc['name']!r}'s: {', '.join(doc['environments'])}"
        )
    return env


async def remove(store: TenantStore, vault: TenantSecrets, name: str) -> dict[str, Any]:
    doc = await find(store, name)
    for secret_name in _secret_names(doc["_id"]):
        await vault.delete(secret_name)
    result = await (await store.collection(PROJECTS)).delete_one({"_id": doc["_id"]})
    return {"name": name, "removed": result.deleted_count == 1}
