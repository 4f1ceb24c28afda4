"""Admin handlers for organizations: create, list, show, update, suspend, resume, delete, export."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from mcpmesh.gateway.control import orgs as org_status
from mcpmesh.gateway.control import tenant_data
from mcpmesh.gateway.control.admin_http import (
    json_body,
    path_org_id,
    query_int,
    query_text,
    record,
)
from mcpmesh.gateway.control.audit import audit_view
from mcpmesh.gateway.control.errors import ApiError, bad_request, conflict, not_found
from mcpmesh.gateway.control.keys import key_view
from mcpmesh.gateway.control.orgs import org_view
from mcpmesh.gateway.control.usage import BUCKET, summarize
from mcpmesh.gateway.control.validation import (
    check_limits_consistent,
    effective_settings,
    name_field,
    reject_unknown,
    settings_patch,
    tier_field,
)
from mcpmesh.proto.errors import ErrorCode
from mcpmesh.proto.subjects import USAGE_STREAM, usage_filter

if TYPE_CHECKING:
    from mcpmesh.gateway.control.plane import ControlPlane

ORG_FIELDS = ("name", "tier", "settings")


async def existing_org(plane: ControlPlane, org_id: str) -> dict[str, Any]:
    row = await plane.orgs.get(org_id)
    if row is None:
        raise not_found(f"organization {org_id} not found")
    return row


def _overrides(tier: str, current: dict[str, Any], patch: object) -> dict[str, Any]:
    overrides = settings_patch(current, patch)
    check_limits_consistent(effective_settings(tier, overrides))
    return overrides


async def create_org(plane: ControlPlane, request: web.Request) -> web.Response:
    body = await json_body(request)
    reject_unknown(body, ORG_FIELDS, "the organization")
    name = name_field(body, required=True, what="organization")
    tier = tier_field(body, default="free")
    assert name is not None and tier is not None
    overrides = _overrides(tier, {}, body["settings"]) if "settings" in body else {}
    row = await plane.orgs.create(name, tier, overrides)
    await record(plane, row["org_id"], "org.create", detail={"tier": tier})
    return web.json_response(org_view(row), status=201)


async def list_orgs(plane: ControlPlane, request: web.Request) -> web.Response:
    limit = query_int(request, "limit", default=50, lo=1, hi=500)
    after = query_text(request, "cursor", max_len=44)
    rows = await plane.orgs.page(limit + 1, after)
    page = rows[:limit]
    next_cursor = page[-1]["org_id"] if len(rows) > limit else None
    return web.json_response({"items": [org_view(r) for r in page], "next_cursor": next_cursor})


async def get_org(plane: ControlPlane, request: web.Request) -> web.Response:
    return web.json_response(org_view(await existing_org(plane, path_org_id(request))))


async def update_org(plane: ControlPlane, request: web.Request) -> web.Response:
    org_id = path_org_id(request)
    body = await json_body(request)
    reject_unknown(body, ORG_FIELDS, "the organization update")
    if not body:
        raise bad_request(f"nothing to update: send any of {', '.join(ORG_FIELDS)}")
    row = await existing_org(plane, org_id)
    if row["status"] == org_status.DELETING:
        raise conflict(f"organization {org_id} is being deleted: finish with DELETE /admin/orgs/{org_id}")
    changes: dict[str, Any] = {}
    name = name_field(body, required=False, what="organization")
    if name is not None:
        changes["name"] = name
    tier = tier_field(body, default=None) or row["tier"]
    if tier != row["tier"]:
        changes["tier"] = tier
    current = row.get("overrides") or {}
    overrides = _overrides(tier, current, body["settings"]) if "settings" in body else current
    if "settings" in body or "tier" in changes:
        check_limits_consistent(effective_settings(tier, overrides))
        changes["overrides"] = overrides
    updated = await plane.orgs.update(org_id, changes)
    assert updated is not None
    await plane.auth.broadcast("*", org_id, "org_updated")
    await record(plane, org_id, "org.update", detail={"fields": ",".join(sorted(body))})
    return web.json_response(org_view(updated))


async def suspend_org(plane: ControlPlane, request: web.Request) -> web.Response:
    org_id = path_org_id(request)
    row = await existing_org(plane, org_id)
    if row["status"] == org_status.DELETING:
        raise conflict(f"organization {org_id} is being deleted")
    await plane.orgs.set_status(org_id, org_status.SUSPENDED)
    await plane.auth.broadcast("*", org_id, "org_suspended")
    await record(plane, org_id, "org.suspend")
    return web.json_response(org_view(await existing_org(plane, org_id)))


async def resume_org(plane: ControlPlane, request: web.Request) -> web.Response:
    org_id = path_org_id(request)
    row = await existing_org(plane, org_id)
    if row["status"] == org_status.DELETING:
        raise conflict(
            f"organization {org_id} is being deleted and cannot be resumed: finish with DELETE /admin/orgs/{org_id}"
        )
    await plane.orgs.set_status(org_id, org_status.ACTIVE)
    await plane.auth.broadcast("*", org_id, "org_updated")
    await record(plane, org_id, "org.resume")
    return web.json_response(org_view(await existing_org(plane, org_id)))


def _service_result(reply: Any) -> dict[str, Any]:
    if reply.error is not None:
        return {"ok": False, "error": {"code": reply.error.code.value, "message": reply.error.message}}
    return {"ok": True, "dropped": list(reply.dropped)}


async def delete_org(plane: ControlPlane, request: web.Request) -> web.Response:
    """Stop the org at once, ask every service to drop its data, then drop the control rows.

    If any service fails, the org stays in status `deleting` (keys revoked, nothing served)
    and the answer is 502 listing each service's result: DELETE again to retry.
    """
    org_id = path_org_id(request)
    await existing_org(plane, org_id)
    await plane.orgs.set_status(org_id, org_status.DELETING)
    revoked = await plane.keys.revoke_org(org_id)
    await plane.auth.broadcast("*", org_id, "org_deleted")
    services = await plane.services()
    replies = await tenant_data.ask_all(plane.bus, plane.commands, "delete", services, org_id)
    results = {name: _service_result(reply) for name, reply in replies.items()}
    failed = sorted(name for name, result in results.items() if not result["ok"])
    if failed:
        await record(
            plane,
            org_id,
            "org.delete",
            outcome=ErrorCode.UNAVAILABLE.value,
            detail={"failed": ",".join(failed)},
        )
        raise ApiError(
            502,
            ErrorCode.UNAVAILABLE,
            f"organization {org_id} is only partly deleted: {', '.join(failed)} did not drop its data. "
            "Its keys are revoked and it serves nothing; DELETE again to retry.",
            id=org_id,
            org_status="deleting",
            services=results,
        )
    dropped = await plane.store.drop_tenant(org_id, include_control=True)
    await plane.orgs.forget_settings(org_id)
    await plane.bus.js.purge_stream(USAGE_STREAM, subject=usage_filter(org_id))
    await record(
        plane, org_id, "org.delete", detail={"services": ",".join(services), "keys": str(len(revoked))}
    )
    return web.json_response(
        {
            "id": org_id,
            "deleted": True,
            "services": results,
            "control_rows": dropped.control_rows,
            "collections": dropped.collections,
        }
    )


async def export_org(plane: ControlPlane, request: web.Request) -> web.Response:
    """Everything held for the org: control rows (no key hashes) and each service's export."""
    org_id = path_org_id(request)
    row = await existing_org(plane, org_id)
    keys = [key_view(k) for k in await plane.keys.of_org(org_id)]
    usage_rows = await plane.store.control("usage")
    usage = [
        summarize({k: v for k, v in r.items() if k not in ("_id", "pending", "kind")})
        async for r in usage_rows.find({"org_id": org_id, "kind": BUCKET}).sort("hour", 1)
    ]
    audit_rows = await plane.store.control("audit")
    audit = [audit_view(r) async for r in audit_rows.find({"org_id": org_id}).sort("ts", 1)]
    services = await plane.services()
    replies = await tenant_data.ask_all(plane.bus, plane.commands, "export", services, org_id)
    exported: dict[str, Any] = {}
    failed = []
    for name, reply in replies.items():
        if reply.error is not None:
            failed.append(name)
            exported[name] = {"ok": False, "error": msgspec.to_builtins(reply.error)}
        else:
            exported[name] = {"ok": True, "data": reply.export or {}}
    await record(plane, org_id, "org.export", outcome="ok" if not failed else ErrorCode.UNAVAILABLE.value)
    body = {
        "org": org_view(row),
        "keys": keys,
        "usage": usage,
        "audit": audit,
        "services": exported,
        "complete": not failed,
    }
    if failed:
        body["error"] = {
            "code": ErrorCode.UNAVAILABLE.value,
            "message": f"export incomplete: {', '.join(sorted(failed))} did not answer; retry later",
        }
    return web.json_response(body, status=502 if failed else 200)
