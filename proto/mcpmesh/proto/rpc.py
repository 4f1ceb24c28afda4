"""The JSON-RPC envelope of one bus exchange (the MCP payload inside is the SDK's business)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from mcpmesh.proto.errors import MeshError


class JsonRpcRequest(msgspec.Struct, frozen=True):
    """Sent on `mcp.<org>.<service>`; `params._meta` carries the 2026-07-28 per-request envelope."""

    jsonrpc: Literal["2.0"]
    id: str | int
    method: str
    params: dict[str, Any] | None = None


class JsonRpcErrorBody(msgspec.Struct, frozen=True):
    code: int
    message: str
    data: MeshError | None = None


class JsonRpcReply(msgspec.Struct, frozen=True, omit_defaults=True):
    """The reply: exactly one of `result` or `error`."""

    jsonrpc: Literal["2.0"]
    id: str | int | None
    result: dict[str, Any] | None = None
    error: JsonRpcErrorBody | None = None
