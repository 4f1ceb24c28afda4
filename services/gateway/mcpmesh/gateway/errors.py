"""Every refusal the gateway answers with: an HTTP status, a JSON-RPC error and one clear sentence.

The JSON-RPC `error.data` is a `MeshError` (code, message, retryable), sometimes with a few
extra keys (e.g. which limit was hit). Messages never carry internals, another org's
name, id or data, or the caller's secret.
"""

from __future__ import annotations

from collections.abc import Mapping
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

from mcpmesh.proto.errors import JSONRPC_CODES, RETRYABLE, ErrorCode, MeshError

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
    ) -> None:
        super().__init__(message)
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
            mesh = MeshError(code=self.code, message=self.message, retryable=self.code in RETRYABLE)
            data = {**msgspec.to_builtins(mesh), **self.extra}
        return {"code": self.jsonrpc_code, "message": self.message, "data": data}


def error_reply(rpc_id: Any, error: GatewayError) -> bytes:
    return msgspec.json.encode({"jsonrpc": "2.0", "id": rpc_id, "error": error.error_body()})


def not_found_method(method: str) -> GatewayError:
    shown = method if len(method) <= 80 else method[:77] + "..."
    return GatewayError.protocol(METHOD_NOT_FOUND, f"method not found: {shown!r}")


def invalid_params(message: str) -> GatewayError:
    return GatewayError.protocol(INVALID_PARAMS, message)
