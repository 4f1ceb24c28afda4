"""Admin handlers for API keys: create, list, rotate, suspend, resume, revoke."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from mcpmesh.gateway.control import keys as key_status
from mcpmesh.gateway.control import orgs as org_status
from mcpmesh.gateway.control.admin_http import json_body, path_key_id, path_org_id, record
from mcpmesh.gateway.control.admin_orgs import existing_org
from mcpmesh.gateway.control.errors import conflict, not_found
from mcpmesh.gateway.control.keys import key_view
from mcpmesh.gateway.control.validation import (
    iso,
    name_field,
    reject_unknown,
    scopes_field,
    seconds_field,
    tags_field,
    time_field,
)

if TYPE_CHECKING:
    from mcpmesh.gateway.control.plane import ControlPlane

KEY_FIELDS = ("name", "scopes", "tags", "expires_at")
MAX_GRACE_S = 30 * 86400.0


async def existing_key(plane: ControlPlane, key_id: str) -> dict[str, Any]:
    row = await plane.keys.get(key_id)
    if row is None:
        raise not_found(f"API key {key_id} not found")
    return row


def _with_secret(view: dict[str, Any], secret: str) -> dict[str, Any]:
    return {**view, "secret": secret, "secret_note": "shown once: store it now, it cannot be read again"}


async def create_key(plane: ControlPlane, request: web.Request) -> web.Response:
    org_id = path_org_id(request)
    body = await json_body(request)
    reject_unknown(body, KEY_FIELDS, "the API key")
    name = name_field(body, required=True, what="key")
    scopes = scopes_field(body)
    tags = tags_field(body)
    expires_at = time_field(body, "expires_at", future=True)
    org = await existing_org(plane, org_id)
    if org["status"] == org_status.DELETING:
        raise conflict(f"organization {org_id} is being deleted: no new keys")
    assert name is not None
    row, secret = await plane.keys.create(org_id, name, scopes, expires_at, tags)
    detail = {"scopes": ",".join(scopes), **({"tags": ",".join(tags)} if tags else {})}
    await record(plane, org_id, "key.create", target=row["key_id"], detail=detail)
    return web.json_response(_with_secret(key_view(row), secret), status=201)


async def list_keys(plane: ControlPlane, request: web.Request) -> web.Response:
    org_id = path_org_id(request)
    await existing_org(plane, org_id)
    return web.json_response({"items": [key_view(r) for r in await plane.keys.of_org(org_id)]})


async def rotate_key(plane: ControlPlane, request: web.Request) -> web.Response:
    key_id = path_key_id(request)
    body = await json_body(request, optional=True)
    reject_unknown(body, ("grace_s",), "the rotation")
    grace_s = seconds_field(body, "grace_s", default=plane.key_grace_s, maximum=MAX_GRACE_S)
    row = await existing_key(plane, key_id)
    if row["status"] == key_status.REVOKED:
        raise conflict(f"API key {key_id} is revoked: create a new key instead")
    rotated = await plane.keys.rotate(key_id, grace_s)
    if rotated is None:
        raise not_found(f"API key {key_id} not found")
    fresh, secret = rotated
    await plane.auth.broadcast(key_id, row["org_id"], "rotated")
    await record(plane, row["org_id"], "key.rotate", target=key_id, detail={"grace_s": f"{grace_s:g}"})
    full = await plane.keys.get(key_id, with_hashes=True)
    grace_ends = max((p["valid_until"] for p in (full or {}).get("previous") or []), default=None)
    view = _with_secret(key_view(fresh), secret)
    view["previous_secret_valid_until"] = iso(grace_ends) if grace_s > 0 else None
    return web.json_response(view)


async def _set_status(plane: ControlPlane, request: web.Request, status: str, action: str) -> web.Response:
    key_id = path_key_id(request)
    row = await existing_key(plane, key_id)
    if row["status"] == key_status.REVOKED and status != key_status.REVOKED:
        raise conflict(f"API key {key_id} is revoked for good: create a new key instead")
    await plane.keys.set_status(key_id, status)
    event = {key_status.REVOKED: "revoked", key_status.SUSPENDED: "suspended"}.get(status, "updated")
    await plane.auth.broadcast(key_id, row["org_id"], event)
    await record(plane, row["org_id"], action, target=key_id)
    return web.json_response(key_view(await existing_key(plane, key_id)))


async def suspend_key(plane: ControlPlane, request: web.Request) -> web.Response:
    return await _set_status(plane, request, key_status.SUSPENDED, "key.suspend")


async def resume_key(plane: ControlPlane, request: web.Request) -> web.Response:
    return await _set_status(plane, request, key_status.ACTIVE, "key.resume")


async def revoke_key(plane: ControlPlane, request: web.Request) -> web.Response:
    return await _set_status(plane, request, key_status.REVOKED, "key.revoke")
