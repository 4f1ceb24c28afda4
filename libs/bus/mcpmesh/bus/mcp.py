"""One MCP JSON-RPC exchange over the bus: what the gateway and downstream callers send.

Requests use the stateless (2026-07-28) shape: every request carries its own
`_meta` envelope (protocol version, client capabilities, client info), so any
replica can serve it with no session.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from typing import Any, Final

import msgspec
from mcp_types import CLIENT_CAPABILITIES_META_KEY, CLIENT_INFO_META_KEY, PROTOCOL_VERSION_META_KEY
from mcp_types.version import LATEST_MODERN_VERSION

from mcpmesh.bus.connection import Bus
from mcpmesh.bus.frames import OnProgress
from mcpmesh.bus.request import Deadline
from mcpmesh.proto import headers as h
from mcpmesh.proto.errors import JSONRPC_CODES, ErrorCode, MeshError, MeshException
from mcpmesh.proto.subjects import cancel_subject, instance_subject, service_subject
from mcpmesh.telemetry.logs import get_logger
from mcpmesh.telemetry.tracing import inject_headers

log = get_logger("mcpmesh.bus")

PROTOCOL_VERSION: Final = LATEST_MODERN_VERSION
CLIENT_INFO: Final = {"name": "mcpmesh-bus", "version": "0.1.0"}
#: The mesh error code of each JSON-RPC error code the mesh uses (for errors without a MeshError).
_MESH_CODES: Final = {number: code for code, number in JSONRPC_CODES.items()}
#: The largest response a caller reassembles unless told otherwise (MCPMESH_MAX_RESULT_BYTES).
DEFAULT_MAX_RESULT_BYTES: Final = 16 * 1024 * 1024


def envelope(meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`params._meta` with the per-request protocol fields filled in where missing."""
    out = dict(meta or {})
    out.setdefault(PROTOCOL_VERSION_META_KEY, PROTOCOL_VERSION)
    out.setdefault(CLIENT_CAPABILITIES_META_KEY, {})
    out.setdefault(CLIENT_INFO_META_KEY, CLIENT_INFO)
    return out


def request_body(method: str, params: Mapping[str, Any] | None = None, request_id: str | int = 1) -> bytes:
    body = dict(params or {})
    body["_meta"] = envelope(body.get("_meta"))
    return msgspec.json.encode({"jsonrpc": "2.0", "id": request_id, "method": method, "params": body})


def result_of(reply: bytes) -> dict[str, Any]:
    """The `result` of a JSON-RPC response; a JSON-RPC error becomes a MeshException."""
    try:
        decoded = msgspec.json.decode(reply)
    except msgspec.DecodeError:
        raise MeshException(ErrorCode.INTERNAL, "the service sent a malformed reply") from None
    if not isinstance(decoded, dict):
        raise MeshException(ErrorCode.INTERNAL, "the service sent a malformed reply")
    if "error" in decoded:
        raise exception_from_error(decoded["error"])
    result = decoded.get("result")
    if not isinstance(result, dict):
        raise MeshException(ErrorCode.INTERNAL, "the service sent a reply without a result")
    return result


def exception_from_error(error: Any) -> MeshException:
    """The MeshException of a JSON-RPC error: its `data` MeshError as sent (code, message,
    retryable, details), so it survives being raised on; from a server that sent none, the
    mesh code of its JSON-RPC code (else `invalid_request`) with its message."""
    if not isinstance(error, dict):
        return MeshException(ErrorCode.INVALID_REQUEST, "request failed")
    try:
        return MeshException.of(msgspec.convert(error.get("data"), MeshError))
    except msgspec.ValidationError:
        number = error.get("code")
        code = _MESH_CODES.get(number) if isinstance(number, int) else None
        return MeshException(code or ErrorCode.INVALID_REQUEST, str(error.get("message") or "request failed"))


async def exchange(
    bus: Bus,
    *,
    org_id: str,
    service: str,
    body: bytes,
    stamp: str,
    deadline: Deadline,
    request_id: str | None = None,
    instance: str | None = None,
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
    on_progress: OnProgress | None = None,
    client_request: str | None = None,
) -> bytes:
    """Send one JSON-RPC message to `mcp.<org>.<service>` and return the raw reply body.

    With `instance`, to that one replica (`mcp.<org>.<service>.<instance>`); a request that
    reaches no replica there then raises `NotDelivered` at once, so the caller can pick another.
    The reply may come as a stream of frames: a response cut into parts is reassembled (up to
    `max_result_bytes`); with `on_progress` the service sends progress notifications, each
    handed to it as it arrives, before the response.

    `client_request`: how the client names the request in a `notifications/cancelled` (see
    `cancel`). When the caller's task is cancelled while it waits (its client went away, its
    own call was cancelled), the service is told to stop the call, by its request id.
    """
    rid = request_id or uuid.uuid4().hex
    hdrs = {h.STAMP: stamp, h.REQUEST_ID: rid}
    if client_request is not None:
        hdrs[h.CLIENT_REQUEST] = client_request
    inject_headers(hdrs)
    if instance is None:
        subject = service_subject(org_id, service)
    else:
        subject = instance_subject(org_id, service, instance)
    try:
        return await bus.request_stream(
            subject,
            body,
            deadline=deadline,
            headers=hdrs,
            retry_unsent=instance is None,
            max_result_bytes=max_result_bytes,
            on_progress=on_progress,
        )
    except asyncio.CancelledError:
        notice = h.CancelNotice(request_id=rid, reason="the caller stopped waiting")
        await cancel(bus, org_id=org_id, service=service, stamp=stamp, notice=notice)
        raise


async def cancel(bus: Bus, *, org_id: str, service: str, stamp: str, notice: h.CancelNotice) -> None:
    """Ask every replica of `service` to stop the org's call that `notice` names (fire and forget:
    a replica stops it only when the stamp's org and API key are the call's own)."""
    try:
        await bus.nc.publish(
            cancel_subject(org_id, service), msgspec.json.encode(notice), headers={h.STAMP: stamp}
        )
    except Exception as exc:  # best effort: the call still ends at its deadline
        log.warning("cancellation not sent", target=service, error=repr(exc))
