"""NATS headers carried by every bus request, and the frames of a streamed reply."""

from __future__ import annotations

from typing import Final, Literal

import msgspec

STAMP: Final = "Mcp-Stamp"  # the tenant stamp: internal JWT minted by the gateway
REQUEST_ID: Final = "Mcp-Request-Id"
DEADLINE: Final = "Mcp-Deadline"  # absolute deadline, unix epoch milliseconds
TRACEPARENT: Final = "traceparent"  # W3C trace context
TRACESTATE: Final = "tracestate"


# -- reply streams ---------------------------------------------------------------------------------
# A request is answered on its reply inbox by ONE message, or by a stream of frames:
#   zero or more `progress` frames (a whole JSON-RPC notification each: notifications/progress,
#   notifications/message), then the response in one or more `part` frames, the last one `end`.
# Every frame carries its sequence number (0, 1, 2, ...); a reply with no `Mcp-Frame` header is the
# whole response in one message (the common case: small result, no progress asked for).
STREAM: Final = "Mcp-Stream"  # on a request: "1" = send progress frames (the caller relays them)
FRAME: Final = "Mcp-Frame"  # on a reply frame: FRAME_PROGRESS, FRAME_PART or FRAME_END
SEQ: Final = "Mcp-Seq"  # on a reply frame: its sequence number in the stream, from 0
FRAME_PROGRESS: Final = "progress"
FRAME_PART: Final = "part"
FRAME_END: Final = "end"
#: At most this many reply messages per request (the services' NATS `allow_responses.max`):
#: the kit stops sending progress frames before it reaches it, keeping room for the response.
STREAM_MAX_FRAMES: Final = 4096
#: A service may answer a request for this long (the services' NATS `allow_responses.expires`).
STREAM_MAX_SECONDS: Final = 3600

# -- cancellation ----------------------------------------------------------------------------------
#: On a request: how its client names it in a `notifications/cancelled` (set by the gateway:
#: `<session id>/<JSON-RPC id>` in a 2025-11-25 session, `-/<JSON-RPC id>` otherwise).
CLIENT_REQUEST: Final = "Mcp-Client-Request"


class CancelNotice(msgspec.Struct, frozen=True, omit_defaults=True):
    """Body of a message on `mcp.<org>.<service>.cancel` (every replica hears it; headers: the
    caller's `Mcp-Stamp`): stop the call of that org and API key whose `Mcp-Request-Id` is
    `request_id`, or whose `Mcp-Client-Request` is `client_request`. Fire and forget."""

    request_id: str | None = None
    client_request: str | None = None
    reason: str = ""


class RequestHeaders(
    msgspec.Struct,
    frozen=True,
    rename={
        "stamp": STAMP,
        "request_id": REQUEST_ID,
        "deadline_ms": DEADLINE,
        "stream": STREAM,
        "client_request": CLIENT_REQUEST,
    },
):
    """The headers of a request on `mcp.<org>.<service>` (documented in the AsyncAPI export)."""

    stamp: str
    request_id: str
    deadline_ms: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    stream: str | None = None
    client_request: str | None = None


class ReplyFrameHeaders(msgspec.Struct, frozen=True, rename={"frame": FRAME, "seq": SEQ}):
    """The headers of one frame of a streamed reply (absent on a reply sent as one message).
    A `progress` frame's body is a whole JSON-RPC notification; the bodies of the `part`
    frames and the `end` frame, joined in `Mcp-Seq` order, are the JSON-RPC reply."""

    frame: Literal["progress", "part", "end"]
    seq: str
