"""Plumbing shared by admin handlers: admin auth, JSON bodies, query and path parameters,
turning errors into JSON, and recording admin actions in the audit log."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from mcpmesh.gateway.control import audit
from mcpmesh.gateway.control.errors import ApiError, bad_request, unauthorized
from mcpmesh.gateway.control.schemas import KEY_ID_PATTERN
from mcpmesh.gateway.control.validation import parse_time
from mcpmesh.proto.errors import ErrorCode
from mcpmesh.proto.ids import InvalidIdentifier, validate_org_id
from mcpmesh.telemetry.logs import get_logger

if TYPE_CHECKING:
    from mcpmesh.gateway.control.plane import ControlPlane

log = get_logger("mcpmesh.gateway.control")

Handler = Callable[["ControlPlane", web.Request], Awaitable[web.Response]]
AiohttpHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_BODY = 256 * 1024


def presented_admin_key(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key", "").strip()


def guarded(plane: ControlPlane, handler: Handler, *, public: bool = False) -> AiohttpHandler:
    """Admin auth first, then the handler; every failure becomes a JSON error, never a traceback."""

    async def run(request: web.Request) -> web.StreamResponse:
        try:
            if not public and not plane.is_admin(presented_admin_key(request)):
                log.warning("admin request refused", path=request.path, method=request.method)
                raise unauthorized()
            return await handler(plane, request)
        except ApiError as exc:
            return exc.response()
        except web.HTTPException:
            raise
        except Exception:
            log.exception("admin request failed", path=request.path, method=request.method)
            return ApiError(
                500, ErrorCode.INTERNAL, "internal error in the admin API: see the gateway log"
            ).response()

    return run


async def json_body(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, ErrorCode.INVALID_REQUEST, f"request body too large: at most {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(64 * 1024):  # read(n) may return less than n: loop
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(
                413, ErrorCode.INVALID_REQUEST, f"request body too large: at most {MAX_BODY} bytes"
            )
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        if optional:
            return {}
        raise bad_request("a JSON object body is required")
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise bad_request("the request body is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise bad_request(
            f"the request body is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    return body


def path_param(request: web.Request, name: str, check: Callable[[str], str]) -> str:
    """A path parameter passed through `check`; its ValueError (which says what is expected,
    never echoing the value at length) becomes a 400."""
    try:
        return check(request.match_info[name])
    except ValueError as exc:
        raise bad_request(str(exc)) from None


def path_org_id(request: web.Request) -> str:
    return path_param(request, "org_id", validate_org_id)


def path_key_id(request: web.Request) -> str:
    key_id = request.match_info["key_id"]
    if not re.fullmatch(KEY_ID_PATTERN, key_id):
        raise bad_request("invalid key id: expected 'key-' followed by 12 lowercase letters or digits")
    return key_id


def query_org_id(request: web.Request) -> str | None:
    value = request.query.get("org_id")
    if value is None or value == "":
        return None
    try:
        return validate_org_id(value)
    except InvalidIdentifier as exc:
        raise bad_request(str(exc)) from None


def query_int(request: web.Request, name: str, *, default: int, lo: int, hi: int) -> int:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        number = lo - 1
    if not lo <= number <= hi:
        raise bad_request(f"'{name}' must be an integer between {lo} and {hi}")
    return number


def query_time(request: web.Request, name: str) -> datetime | None:
    value = request.query.get(name)
    return parse_time(value, name) if value else None


def query_text(request: web.Request, name: str, *, max_len: int = 100) -> str | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    if len(value) > max_len or not value.isprintable():
        raise bad_request(f"'{name}' must be at most {max_len} printable characters")
    return value


async def record(
    plane: ControlPlane,
    org_id: str,
    action: str,
    *,
    target: str | None = None,
    outcome: str = "ok",
    detail: dict[str, str] | None = None,
) -> None:
    """An admin action into the audit log; a failure to record is logged, not hidden."""
    event = audit.new_event(
        org_id, actor=audit.ADMIN, action=action, target=target or org_id, outcome=outcome, detail=detail
    )
    try:
        await audit.publish(plane.bus, event)
    except Exception as exc:
        log.error("admin action not audited", action=action, org_id=org_id, error=repr(exc))
