"""Every refusal the gateway answers with: an HTTP status, a JSON-RPC error and one clear sentence.

The JSON-RPC `error.data` is a `MeshError` (code, message, retryable, details); `details` holds
what a client may act on (e.g. which limit was hit, the scope it needs). Messages never carry internals, another org's
name, id or data, or the caller's secret. `retryable` is the code's default unless the
error knows better (a timed-out write may have been applied: not retryable).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from mcp_types import (
    HEADER_MISMATCH,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
)
from mcp_types.jsonrpc import MISSING_REQUIRED_CLIENT_CAPABILITY, UNSUPPORTED_PROTOCOL_VERSION

from mcpmesh.proto.errors import JSONRPC_CODES, ErrorCode, MeshError, is_retryable

#: HTTP status for a JSON-RPC error code (the SDK's table for protocol codes, plus the mesh's own).
HTTP_STATUS: Final[dict[int, int]] = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    MISSING_REQUIRED_CLIENT_CAPABILITY: 400,
    UNSUPPORTED_PROTOCOL_VERSION: 400,
    METHOD_NOT_FOUND: 404,
    JSONRPC_CODES[ErrorCode.UNAUTHENTICATED]: 401,
    JSONRPC_CODES[ErrorCode.FORBIDDEN]: 403,
    JSONRPC_CODES[ErrorCode.NOT_FOUND]: 404,
    JSONRPC_CODES[ErrorCode.CONFLICT]: 409,
    JSONRPC_CODES[ErrorCode.RATE_LIMITED]: 429,
    JSONRPC_CODES[ErrorCode.LIMIT_EXCEEDED]: 429,
    JSONRPC_CODES[ErrorCode.TIMEOUT]: 504,
    JSONRPC_CODES[ErrorCode.UNAVAILABLE]: 503,
    INTERNAL_ERROR: 500,
}

#: The mesh error code reported (metrics, logs, audit) for a JSON-RPC protocol error code.
_MESH_CODE_OF: Final[dict[int, ErrorCode]] = {
    PARSE_ERROR: ErrorCode.INVALID_REQUEST,
    INVALID_REQUEST: ErrorCode.INVALID_REQUEST,
    INVALID_PARAMS: ErrorCode.INVALID_REQUEST,
    HEADER_MISMATCH: ErrorCode.INVALID_REQUEST,
    MISSING_REQUIRED_CLIENT_CAPABILITY: ErrorCode.INVALID_REQUEST,
    UNSUPPORTED_PROTOCOL_VERSION: ErrorCode.INVALID_REQUEST,
    METHOD_NOT_FOUND: ErrorCode.NOT_FOUND,
    INTERNAL_ERROR: ErrorCode.INTERNAL,
}


def mesh_code_of(jsonrpc_code: int) -> ErrorCode:
    if jsonrpc_code in _MESH_CODE_OF:
        return _MESH_CODE_OF[jsonrpc_code]
    for code, value in JSONRPC_CODES.items():
        if value == jsonrpc_code:
            return code
    return ErrorCode.INVALID_REQUEST


class GatewayError(Exception):
    """Raise anywhere while serving a request; the endpoint renders it."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        jsonrpc_code: int | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
        data: Any = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = is_retryable(code, retryable)
        self.protocol_data = data  # replaces the MeshError `data` (e.g. the SDK's version list)
        self.code = code
        self.message = message
        self.jsonrpc_code = jsonrpc_code if jsonrpc_code is not None else JSONRPC_CODES[code]
        self.status = status if status is not None else HTTP_STATUS.get(self.jsonrpc_code, 400)
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    @classmethod
    def protocol(
        cls, jsonrpc_code: int, message: str, *, status: int | None = None, data: Any = None
    ) -> GatewayError:
        """A JSON-RPC protocol error (parse error, invalid request, header mismatch, ...)."""
        return cls(mesh_code_of(jsonrpc_code), message, jsonrpc_code=jsonrpc_code, status=status, data=data)

    def error_body(self) -> dict[str, Any]:
        if self.protocol_data is not None:
            data: Any = self.protocol_data
        else:
            mesh = MeshError(
                code=self.code, message=self.message, retryable=self.retryable, details=self.extra
            )
            data = msgspec.to_builtins(mesh)
        return {"code": self.jsonrpc_code, "message": self.message, "data": data}


def error_reply(rpc_id: Any, error: GatewayError) -> bytes:
    return msgspec.json.encode({"jsonrpc": "2.0", "id": rpc_id, "error": error.error_body()})


def not_found_method(method: str) -> GatewayError:
    shown = method if len(method) <= 80 else method[:77] + "..."
    return GatewayError.protocol(METHOD_NOT_FOUND, f"method not found: {shown!r}")


def invalid_params(message: str) -> GatewayError:
    return GatewayError.protocol(INVALID_PARAMS, message)


@dataclass(frozen=True)
class Repeat:
    """What a client may do with a request a service did not answer in time (it may have run it)."""

    what: str  # e.g. "tool 'context_append'"
    safe: bool  # read-only or idempotent: running it again changes nothing more
    key: str | None = None  # the argument the tool deduplicates on, if it declares one
    key_sent: bool = False  # ... and the client gave it, so resending the same call is safe


def timed_out(service: str, repeat: Repeat, *, waited_s: float | None) -> GatewayError:
    """The 504 for a request that was sent and not finished in time (the gateway waited `waited_s`,
    or the service stopped it at its deadline): honest about whether it ran."""
    if waited_s is not None:
        head = f"service {service!r} did not answer within {waited_s:g} s"
    else:
        head = f"service {service!r} did not finish in time"
    if repeat.safe:
        return GatewayError(
            ErrorCode.TIMEOUT,
            f"{head}; {repeat.what} is read-only or idempotent, so retrying it is safe",
            retryable=True,
        )
    if repeat.key is not None and repeat.key_sent:
        return GatewayError(
            ErrorCode.TIMEOUT,
            f"{head}: {repeat.what} may have been applied; resend it with the same {repeat.key!r} "
            "to retry safely (the service applies it at most once)",
            retryable=True,
            extra={"may_have_applied": True, "idempotency_key": repeat.key},
        )
    advice = "check the current state before retrying"
    if repeat.key is not None:
        advice += f", and pass {repeat.key!r} so that a retry is applied at most once"
    return GatewayError(
        ErrorCode.TIMEOUT,
        f"{head}: {repeat.what} may have been applied; {advice}",
        retryable=False,
        extra={"may_have_applied": True},
    )
