"""Admin handlers for reports: usage roll-ups and the audit log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from mcpmesh.gateway.control.admin_http import query_int, query_org_id, query_text, query_time
from mcpmesh.gateway.control.errors import bad_request
from mcpmesh.gateway.control.usage import GROUP_FIELDS, LLM_DIMS, hour_of
from mcpmesh.gateway.control.validation import iso

if TYPE_CHECKING:
    from mcpmesh.gateway.control.plane import ControlPlane


def _range(request: web.Request, field: str) -> dict[str, Any]:
    since, until = query_time(request, "since"), query_time(request, "until")
    if since and until and since >= until:
        raise bad_request("'since' must be before 'until'")
    bounds: dict[str, Any] = {}
    if since:
        bounds["$gte"] = hour_of(since.timestamp()) if field == "hour" else since
    if until:
        bounds["$lt"] = until
    return {field: bounds} if bounds else {}


async def usage(plane: ControlPlane, request: web.Request) -> web.Response:
    """Totals and groups over hourly buckets: `since` is rounded down to its hour."""
    match: dict[str, Any] = {}
    org_id = query_org_id(request)
    if org_id:
        match["org_id"] = org_id
    for field in ("key_id", "service", "method", "tool", *LLM_DIMS):
        value = query_text(request, field, max_len=200)
        if value:
            match[field] = value
    match.update(_range(request, "hour"))
    group_by = [g for g in (request.query.get("group_by") or "").split(",") if g]
    unknown = [g for g in group_by if g not in GROUP_FIELDS]
    if unknown or len(group_by) != len(set(group_by)):
        raise bad_request(f"'group_by' must be a comma-separated list of distinct {', '.join(GROUP_FIELDS)}")
    result = await plane.usage.query(match, group_by)
    since, until = query_time(request, "since"), query_time(request, "until")
    filters = {k: v for k, v in match.items() if k != "hour"}
    return web.json_response(
        {
            "filters": filters,
            "since": iso(hour_of(since.timestamp())) if since else None,
            "until": iso(until),
            "group_by": group_by,
            **result,
        }
    )


async def audit_log(plane: ControlPlane, request: web.Request) -> web.Response:
    match: dict[str, Any] = {}
    org_id = query_org_id(request)
    if org_id:
        match["org_id"] = org_id
    for field in ("actor", "action", "outcome"):
        value = query_text(request, field)
        if value:
            match[field] = value
    match.update(_range(request, "ts"))
    limit = query_int(request, "limit", default=100, lo=1, hi=1000)
    items, next_cursor = await plane.audit.query(match, limit, query_text(request, "cursor", max_len=200))
    return web.json_response({"items": items, "next_cursor": next_cursor})
