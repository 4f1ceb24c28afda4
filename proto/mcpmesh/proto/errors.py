"""The one error vocabulary. Errors never carry internals or another tenant's data.

On the MCP wire a failure is one of two things:
- a **protocol error** (the request could not be served: bad params, unknown method, missing
  scope, rate limit, timeout): a JSON-RPC error whose `code` is `JSONRPC_CODES[code]` and
  whose `data` is the `MeshError`;
- a **tool execution failure** (the tool ran and failed): a `tools/call` result with
  `isError: true` whose `structuredContent` is the `MeshError` (`tool_error_result`), so a
  caller one or many hops away reads the same code, retryability and details
  (`error_of_tool_result`).
"""

from __future__ import annotations

import enum
from typing import Any, Final

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
    CANCELLED = "cancelled"  # the caller cancelled the request, or went away while it ran


#: JSON-RPC error code used for each mesh error on the MCP wire.
JSONRPC_CODES: Final[dict[ErrorCode, int]] = {
    ErrorCode.INVALID_REQUEST: -32602,
    ErrorCode.UNAUTHENTICATED: -32001,
    ErrorCode.FORBIDDEN: -32003,
    ErrorCode.NOT_FOUND: -32004,
    ErrorCode.CONFLICT: -32009,
    ErrorCode.LIMIT_EXCEEDED: -32030,
    ErrorCode.RATE_LIMITED: -32029,
    ErrorCode.TIMEOUT: -32008,
    ErrorCode.UNAVAILABLE: -32010,
    ErrorCode.INTERNAL: -32603,
    ErrorCode.CANCELLED: -32800,
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
    details: dict[str, Any] = msgspec.field(default_factory=dict)  # e.g. which limit, the tool


class MeshException(Exception):
    """Raise anywhere in a service; the kit turns it into a JSON-RPC error."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        retryable: bool | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.error = MeshError(
            code=code, message=message, retryable=is_retryable(code, retryable), details=dict(details or {})
        )

    @classmethod
    def of(cls, error: MeshError) -> MeshException:
        """Raise a MeshError received from elsewhere as it came (code, retryable, details)."""
        return cls(error.code, error.message, retryable=error.retryable, details=error.details)

    @property
    def jsonrpc_code(self) -> int:
        return JSONRPC_CODES[self.error.code]


def tool_error_result(error: MeshError) -> dict[str, Any]:
    """The `tools/call` result for a tool that failed: `isError`, the message as text (for clients
    that read only `content`) and the `MeshError` as `structuredContent`."""
    return {
        "content": [{"type": "text", "text": f"{error.code.value}: {error.message}"}],
        "structuredContent": msgspec.to_builtins(error),
        "isError": True,
    }


def error_of_tool_result(result: Any) -> MeshError | None:
    """The `MeshError` of an `isError` tool result (None for a success); a result from a server
    outside the mesh (no structured error) reads as a non-retryable `internal` error with its text."""
    if not isinstance(result, dict) or result.get("isError") is not True:
        return None
    try:
        return msgspec.convert(result.get("structuredContent"), MeshError)
    except msgspec.ValidationError:
        content = result.get("content")
        texts = (
            [c.get("text", "") for c in content if isinstance(c, dict)] if isinstance(content, list) else []
        )
        text = " ".join(t for t in texts if isinstance(t, str)).strip()
        return MeshError(ErrorCode.INTERNAL, text[:500] or "the tool failed", retryable=False)
