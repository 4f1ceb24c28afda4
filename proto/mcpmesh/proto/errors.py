"""The one error vocabulary. Errors never carry internals or another tenant's data."""

from __future__ import annotations

import enum
from typing import Final

import msgspec


class ErrorCode(enum.StrEnum):
    INVALID_REQUEST = "invalid_request"  # malformed payload or parameters
    UNAUTHENTICATED = "unauthenticated"  # missing, forged or expired stamp / key
    FORBIDDEN = "forbidden"  # wrong org, wrong audience, missing scope
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    LIMIT_EXCEEDED = "limit_exceeded"  # tier limits: context count, tokens, quota
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"  # no responders, service down
    INTERNAL = "internal"


#: JSON-RPC error code used for each mesh error on the MCP wire.
JSONRPC_CODES: Final[dict[ErrorCode, int]] = {
    ErrorCode.INVALID_REQUEST: -32602,
    ErrorCode.UNAUTHENTICATED: -32001,
    ErrorCode.FORBIDDEN: -32003,
    ErrorCode.NOT_FOUND: -32004,
    ErrorCode.CONFLICT: -32009,
    ErrorCode.LIMIT_EXCEEDED: -32029,
    ErrorCode.RATE_LIMITED: -32029,
    ErrorCode.TIMEOUT: -32008,
    ErrorCode.UNAVAILABLE: -32010,
    ErrorCode.INTERNAL: -32603,
}

RETRYABLE: Final = frozenset({ErrorCode.TIMEOUT, ErrorCode.UNAVAILABLE, ErrorCode.RATE_LIMITED})


def is_retryable(code: ErrorCode, override: bool | None = None) -> bool:
    """`override` when given, else whether errors with `code` are retryable by default."""
    return code in RETRYABLE if override is None else override


class MeshError(msgspec.Struct, frozen=True):
    """What a caller is told when something fails; carried as JSON-RPC `error.data`.

    `retryable` says whether sending the same request again is safe and may succeed: by default
    the code's (`RETRYABLE`), overridden where the code alone would mislead (a timed-out write
    that may have been applied is a TIMEOUT, but not retryable).
    """

    code: ErrorCode
    message: str
    retryable: bool = False


class MeshException(Exception):
    """Raise anywhere in a service; the kit turns it into a JSON-RPC error."""

    def __init__(self, code: ErrorCode, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.error = MeshError(code=code, message=message, retryable=is_retryable(code, retryable))

    @property
    def jsonrpc_code(self) -> int:
        return JSONRPC_CODES[self.error.code]
