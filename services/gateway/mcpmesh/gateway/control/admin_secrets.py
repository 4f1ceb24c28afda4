"""Admin handlers for an org's secrets in a service: set, list, delete.

The gateway keeps no secret: each request becomes a call of the service's own secret tool
(`secret_set`, `secrets`, `secret_delete`; the kit's `MeshService(secrets=True)`), as the org,
with a stamp minted for that one service and scope `<service>:admin` (subject `admin`). The
value crosses the gateway once, is never logged, audited or answered: only its `SecretInfo`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

import nats.errors
from aiohttp import web
from nats.micro.service import ServiceVerb, control_subject

from mcpmesh.bus import Deadline
from mcpmesh.bus.mcp import exchange, request_body, result_of
from mcpmesh.gateway.control import audit
from mcpmesh.gateway.control import orgs as org_status
from mcpmesh.gateway.control.admin_http import json_body, path_org_id, path_param, record
from mcpmesh.gateway.control.admin_orgs import existing_org
from mcpmesh.gateway.control.errors import ApiError, bad_request, conflict, not_found
from mcpmesh.gateway.control.validation import reject_unknown
from mcpmesh.proto.errors import ErrorCode, MeshError, MeshException, error_of_tool_result
from mcpmesh.proto.ids import validate_service_name
from mcpmesh.secrets import validate_secret_name
from mcpmesh.service.vault import SECRETS_METADATA

if TYPE_CHECKING:
    from mcpmesh.gateway.control.plane import ControlPlane

#: How long the service has to answer one secret call.
_CALL_S: Final = 10.0


def _path_service(request: web.Request) -> str:
    return path_param(request, "service", validate_service_name)


def _path_name(request: web.Request) -> str:
    return path_param(request, "name", validate_secret_name)


async def _require_secrets(plane: ControlPlane, service: str) -> None:
    """404 unless a replica of `service` answers and keeps tenant secrets (its nats.micro metadata)."""
    try:
        msg = await plane.bus.nc.request(control_subject(ServiceVerb.INFO, service), b"", timeout=2.0)
        metadata = json.loads(msg.data).get("metadata") or {}
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        raise not_found(f"no replica of service {service} is running") from None
    except (ValueError, AttributeError):
        metadata = {}
    if metadata.get(SECRETS_METADATA) != "true":
        raise not_found(f"service {service} keeps no tenant secrets")


def _failed(service: str, error: MeshError) -> ApiError:
    if error.code in (ErrorCode.INVALID_REQUEST, ErrorCode.NOT_FOUND):  # the caller's to fix
        return ApiError(400 if error.code is ErrorCode.INVALID_REQUEST else 404, error.code, error.message)
    return ApiError(502, error.code, f"service {service} failed: {error.message}", retryable=error.retryable)


async def _call(
    plane: ControlPlane, request: web.Request, tool: str, arguments: dict[str, Any]
) -> tuple[str, str, dict[str, Any]]:
    """(org, service, the tool's structured result) of one secret tool call as the org's admin."""
    org_id = path_org_id(request)
    service = _path_service(request)
    row = await existing_org(plane, org_id)
    if row["status"] == org_status.DELETING:
        raise conflict(f"organization {org_id} is being deleted")
    await _require_secrets(plane, service)
    stamp = plane.stamps.mint(
        org_id=org_id, tier=row["tier"], scopes=[f"{service}:admin"], sub=audit.ADMIN, service=service
    )
    body = request_body("tools/call", {"name": tool, "arguments": arguments})
    try:
        reply = await exchange(
            plane.bus,
            org_id=org_id,
            service=service,
            body=body,
            stamp=stamp,
            deadline=Deadline.after(_CALL_S),
        )
        result = result_of(reply)
    except MeshException as exc:
        raise _failed(service, exc.error) from None
    error = error_of_tool_result(result)
    if error is not None:
        raise _failed(service, error)
    structured = result.get("structuredContent")
    if not isinstance(structured, dict):
        raise ApiError(502, ErrorCode.INTERNAL, f"service {service} sent an unreadable answer")
    return org_id, service, structured


async def _audited(
    plane: ControlPlane, request: web.Request, action: str, tool: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    """`_call`, recorded in the audit log (target `<service>/<name>`, never a value)."""
    name = arguments.get("name")
    target = f"{request.match_info['service']}/{name}" if name else request.match_info["service"]
    try:
        org_id, service, result = await _call(plane, request, tool, arguments)
    except ApiError as exc:
        if exc.status >= 500 or exc.code is ErrorCode.INVALID_REQUEST:
            await record(plane, path_org_id(request), action, target=target, outcome=exc.code.value)
        raise
    detail = {"service": service}
    if isinstance(result.get("fingerprint"), str):
        detail["fingerprint"] = result["fingerprint"]
    outcome = "ok" if result.get("deleted", True) else ErrorCode.NOT_FOUND.value
    await record(plane, org_id, action, target=target, outcome=outcome, detail=detail)
    return result


async def put_secret(plane: ControlPlane, request: web.Request) -> web.Response:
    name = _path_name(request)
    body = await json_body(request)
    reject_unknown(body, ("value",), "the secret")
    value = body.get("value")
    if not isinstance(value, str) or not value.strip():
        raise bad_request("'value' is required: the secret, a non-empty string")
    info = await _audited(plane, request, "secret.set", "secret_set", {"name": name, "value": value})
    return web.json_response(info)


async def list_secrets(plane: ControlPlane, request: web.Request) -> web.Response:
    _, _, result = await _call(plane, request, "secrets", {})
    return web.json_response({"items": result.get("secrets", [])})


async def delete_secret(plane: ControlPlane, request: web.Request) -> web.Response:
    name = _path_name(request)
    result = await _audited(plane, request, "secret.delete", "secret_delete", {"name": name})
    if not result.get("deleted"):
        raise not_found(f"no secret {name} in service {request.match_info['service']} for this organization")
    return web.json_response(result)
