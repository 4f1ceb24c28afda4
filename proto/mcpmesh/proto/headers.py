"""NATS headers carried by every bus request."""

from __future__ import annotations

from typing import Final

import msgspec

STAMP: Final = "Mcp-Stamp"  # the tenant stamp: internal JWT minted by the gateway
REQUEST_ID: Final = "Mcp-Request-Id"
DEADLINE: Final = "Mcp-Deadline"  # absolute deadline, unix epoch milliseconds
TRACEPARENT: Final = "traceparent"  # W3C trace context
TRACESTATE: Final = "tracestate"


class RequestHeaders(
    msgspec.Struct,
    frozen=True,
    rename={
        "stamp": STAMP,
        "request_id": REQUEST_ID,
        "deadline_ms": DEADLINE,
    },
):
    """The headers of a request on `mcp.<org>.<service>` (documented in the AsyncAPI export)."""

    stamp: str
    request_id: str
    deadline_ms: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None
