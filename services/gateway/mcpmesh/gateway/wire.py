"""The request parser: HTTP method, headers and body in, a routed MCP message or a rejection out.

Pure (no I/O, no state) and total: whatever bytes and headers arrive, `parse_request`
returns one of `McpRequest`, `Acknowledge`, `OpenStream`, `EndSession` or `Rejection`,
never raises. Semantics that need state (who the key is, which services exist, whether a
session id is genuine) come after, in the endpoint and the router.

Which revision a request speaks is decided the way the SDK's own server decides it: an
`MCP-Protocol-Version` header naming a version outside the initialize-handshake set selects
the stateless 2026-07-28 path; no header, or a handshake version, selects the 2025-11-25
session path (whose first request, `initialize`, carries no such header).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import msgspec
from mcp.shared.inbound import (
    MCP_PROTOCOL_VERSION_HEADER,
    InboundLadderRejection,
    classify_inbound_request,
    find_duplicated_routing_header,
    unsupported_protocol_version_rejection,
)
from mcp.shared.jsonrpc_dispatcher import cancelled_request_id_from_params
from mcp_types import CLIENT_CAPABILITIES_META_KEY, CLIENT_INFO_META_KEY, PROTOCOL_VERSION_META_KEY
from mcp_types.jsonrpc import HEADER_MISMATCH, INVALID_REQUEST, PARSE_ERROR
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_MODERN_VERSION
from multidict import CIMultiDict, CIMultiDictProxy

from mcpmesh.gateway.errors import HTTP_STATUS, GatewayError
from mcpmesh.proto.errors import ErrorCode
from mcpmesh.proto.ids import InvalidIdentifier, validate_service_name

Era = Literal["modern", "legacy"]
SESSION_HEADER: Final = "mcp-session-id"
MAX_METHOD_LEN: Final = 128
MAX_ID_LEN: Final = 256
_JSON_TYPES: Final = ("application/json", "application/*", "*/*")
_SSE_TYPES: Final = ("text/event-stream", "text/*", "*/*")


@dataclass(frozen=True)
class McpRequest:
    """One JSON-RPC request, envelope checked."""

    era: Era
    service: str | None  # the `/mcp/<service>` path segment, None for the aggregate `/mcp`
    rpc_id: str | int
    method: str
    params: dict[str, Any]
    protocol_version: str | None  # modern: the envelope's; legacy: the header's (None on initialize)
    client_info: Any = None
    client_capabilities: Any = None
    session_id: str | None = None  # legacy only
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Acknowledge:
    """A notification or a client's response: answered 202 with no body."""

    era: Era
    service: str | None
    method: str | None
    session_id: str | None = None
    cancelled: str | int | None = None  # `notifications/cancelled`: the request id it names


@dataclass(frozen=True)
class OpenStream:
    """Legacy GET: the session's server-to-client SSE stream."""

    service: str | None
    session_id: str
    protocol_version: str | None


@dataclass(frozen=True)
class EndSession:
    """Legacy DELETE: the client ends its session."""

    service: str | None
    session_id: str
    protocol_version: str | None


@dataclass(frozen=True)
class Rejection:
    status: int
    error: GatewayError
    rpc_id: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


Parsed = McpRequest | Acknowledge | OpenStream | EndSession | Rejection


def _reject(error: GatewayError, rpc_id: Any = None, headers: Mapping[str, str] | None = None) -> Rejection:
    return Rejection(status=error.status, error=error, rpc_id=rpc_id, headers=dict(headers or {}))


def _protocol(code: int, message: str, *, status: int | None = None, data: Any = None) -> GatewayError:
    return GatewayError.protocol(code, message, status=status, data=data)


def _shown(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def _media_types(value: str) -> list[str]:
    return [part.split(";", 1)[0].strip().lower() for part in value.split(",")]


def _accepts(headers: Mapping[str, str], wanted: tuple[str, ...]) -> bool:
    """A missing Accept header accepts anything (curl); a present one must name a wanted type."""
    accept = headers.get("accept")
    if accept is None or not accept.strip():
        return True
    return any(t in wanted for t in _media_types(accept))


def _json_content(headers: Mapping[str, str]) -> bool:
    ctype = headers.get("content-type")
    if ctype is None or not ctype.strip():
        return True
    return _media_types(ctype)[0] == "application/json"


def origin_allowed(origin: str | None, allowed: Iterable[str]) -> bool:
    """No Origin (not a browser) is allowed; a browser origin must be listed (scheme://host[:port]).

    A listed origin without a port allows every port of that host (`http://localhost`
    covers `http://localhost:6274`, the MCP Inspector); `*` allows every origin.
    """
    if origin is None:
        return True
    origin = origin.strip().rstrip("/").lower()
    for entry in allowed:
        entry = entry.lower()
        if entry == "*" or entry == origin:
            return True
        if origin.startswith(entry + ":") and origin[len(entry) + 1 :].isdigit():
            return True
    return False


def _read_post(headers: Mapping[str, str], body: bytes) -> tuple[dict[str, Any], Any] | Rejection:
    """What every POST must pass in either revision: Accept, Content-Type, JSON, one message."""
    if not _accepts(headers, _JSON_TYPES):
        return _reject(
            GatewayError(
                ErrorCode.INVALID_REQUEST, "the Accept header must include application/json", status=406
            )
        )
    if not _json_content(headers):
        return _reject(
            GatewayError(ErrorCode.INVALID_REQUEST, "the Content-Type must be application/json", status=415)
        )
    decoded, error = _decode(body)
    if error is not None:
        return _reject(error)
    message, rpc_id, error = _message(decoded)
    if error is not None or message is None:
        return _reject(error or _protocol(INVALID_REQUEST, "invalid JSON-RPC message"), rpc_id)
    return message, rpc_id


def _decode(body: bytes) -> tuple[Any, GatewayError | None]:
    if not body.strip():
        return None, _protocol(PARSE_ERROR, "the request body is empty: send one JSON-RPC request object")
    try:
        return msgspec.json.decode(body), None
    except UnicodeDecodeError:
        return None, _protocol(PARSE_ERROR, "the request body is not valid UTF-8")
    except RecursionError:
        return None, _protocol(PARSE_ERROR, "the request body nests JSON too deeply")
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
        return None, _protocol(PARSE_ERROR, "the request body is not valid JSON")


def _check_id(decoded: dict[str, Any]) -> tuple[Any, GatewayError | None]:
    """The request id, or an error naming what is wrong with it."""
    rpc_id = decoded.get("id")
    if isinstance(rpc_id, bool) or not isinstance(rpc_id, str | int):
        return None, _protocol(INVALID_REQUEST, "the JSON-RPC 'id' must be a string or an integer")
    if isinstance(rpc_id, str) and len(rpc_id) > MAX_ID_LEN:
        return None, _protocol(INVALID_REQUEST, f"the JSON-RPC 'id' is longer than {MAX_ID_LEN} characters")
    if isinstance(rpc_id, int) and abs(rpc_id) >= 2**63:
        return None, _protocol(INVALID_REQUEST, "the JSON-RPC 'id' integer is out of range")
    return rpc_id, None


def _message(decoded: Any) -> tuple[dict[str, Any] | None, Any, GatewayError | None]:
    """(message, id) for one JSON-RPC object, or the error that rejects it; id is None for notifications."""
    if isinstance(decoded, list):
        return (
            None,
            None,
            _protocol(
                INVALID_REQUEST, "JSON-RPC batches are not supported: send one request object per POST"
            ),
        )
    if not isinstance(decoded, dict):
        return None, None, _protocol(INVALID_REQUEST, "the body must be one JSON-RPC request object")
    rpc_id: Any = None
    if "id" in decoded:
        rpc_id, error = _check_id(decoded)
        if error is not None:
            return None, None, error
    if decoded.get("jsonrpc") != "2.0":
        return (
            None,
            rpc_id,
            _protocol(INVALID_REQUEST, "not a JSON-RPC 2.0 message: 'jsonrpc' must be \"2.0\""),
        )
    method = decoded.get("method")
    if "method" in decoded:
        if not isinstance(method, str) or not method:
            return (
                None,
                rpc_id,
                _protocol(INVALID_REQUEST, "the JSON-RPC 'method' must be a non-empty string"),
            )
        if len(method) > MAX_METHOD_LEN:
            return (
                None,
                rpc_id,
                _protocol(
                    INVALID_REQUEST, f"the JSON-RPC 'method' is longer than {MAX_METHOD_LEN} characters"
                ),
            )
    params = decoded.get("params")
    if params is not None and not isinstance(params, dict):
        return None, rpc_id, _protocol(INVALID_REQUEST, "the JSON-RPC 'params' must be an object")
    return decoded, rpc_id, None


def parse_request(
    http_method: str,
    service: str | None,
    headers: Mapping[str, str],
    body: bytes,
    *,
    allowed_origins: Iterable[str] = (),
    header_items: Iterable[tuple[str, str]] | None = None,
) -> Parsed:
    """Classify one HTTP request to `/mcp` or `/mcp/<service>`.

    `headers` must be case-insensitive or keyed by lowercase name; `header_items` are the
    raw header lines (to spot a duplicated routing header), defaulting to `headers`.
    """
    try:
        return _parse(http_method, service, headers, body, allowed_origins, header_items)
    except Exception:  # the parser is total: a bug here must still be a clean rejection
        return _reject(GatewayError(ErrorCode.INVALID_REQUEST, "the request could not be parsed", status=400))


def _lower(headers: Mapping[str, str]) -> Mapping[str, str]:
    if isinstance(headers, CIMultiDictProxy | CIMultiDict):
        return headers  # already case-insensitive: no copy
    out: dict[str, str] = {}
    for key, value in headers.items():
        out.setdefault(key.lower(), value)
    return out


def _parse(
    http_method: str,
    service: str | None,
    raw_headers: Mapping[str, str],
    body: bytes,
    allowed_origins: Iterable[str],
    header_items: Iterable[tuple[str, str]] | None,
) -> Parsed:
    headers = _lower(raw_headers)
    if service is not None:
        try:
            validate_service_name(service)
        except InvalidIdentifier:
            return _reject(
                GatewayError(
                    ErrorCode.NOT_FOUND,
                    f"no service {_shown(service, 40)!r}: service paths are /mcp/<name>, e.g. /mcp/context",
                )
            )
    if not origin_allowed(headers.get("origin"), allowed_origins):
        return _reject(
            GatewayError(
                ErrorCode.FORBIDDEN,
                "this Origin is not allowed to call the gateway (MCPMESH_ALLOWED_ORIGINS)",
                status=403,
            )
        )
    version = headers.get(MCP_PROTOCOL_VERSION_HEADER)
    if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
        return _parse_modern(http_method, service, headers, header_items, body)
    return _parse_legacy(http_method, service, headers, body, version)


def _parse_modern(
    http_method: str,
    service: str | None,
    headers: Mapping[str, str],
    header_items: Iterable[tuple[str, str]] | None,
    body: bytes,
) -> Parsed:
    if http_method != "POST":
        return _reject(
            GatewayError(
                ErrorCode.INVALID_REQUEST,
                f"{_shown(http_method, 10)} is not allowed at protocol version {LATEST_MODERN_VERSION}: "
                "every request is a POST (there is no session to stream or end)",
                jsonrpc_code=INVALID_REQUEST,
                status=405,
            ),
            headers={"Allow": "POST"},
        )
    read = _read_post(headers, body)
    if isinstance(read, Rejection):
        return read
    message, rpc_id = read
    if "method" not in message:  # a response: the 2026-07-28 server never asks the client anything
        return _reject(
            _protocol(INVALID_REQUEST, "the body must be a JSON-RPC request: this server sends no requests")
        )
    method: str = message["method"]
    if "id" not in message:
        unsupported = unsupported_protocol_version_rejection(headers.get(MCP_PROTOCOL_VERSION_HEADER, ""))
        if unsupported is not None:
            return _reject(_ladder(unsupported))
        return Acknowledge(era="modern", service=service, method=method, cancelled=_cancelled(message))
    duplicated = find_duplicated_routing_header(header_items if header_items is not None else headers.items())
    if duplicated is not None:
        return _reject(_protocol(HEADER_MISMATCH, f"the {duplicated} header appears more than once"), rpc_id)
    verdict = classify_inbound_request(message, headers=headers)
    if isinstance(verdict, InboundLadderRejection):
        return _reject(_ladder(verdict), rpc_id)
    return McpRequest(
        era="modern",
        service=service,
        rpc_id=rpc_id,
        method=method,
        params=message.get("params") or {},
        protocol_version=verdict.protocol_version,
        client_info=verdict.client_info,
        client_capabilities=verdict.client_capabilities,
        headers=headers,
    )


def _ladder(rejection: InboundLadderRejection) -> GatewayError:
    return _protocol(
        rejection.code,
        rejection.message,
        status=HTTP_STATUS.get(rejection.code, 400),
        data=rejection.data,
    )


def _parse_legacy(
    http_method: str, service: str | None, headers: Mapping[str, str], body: bytes, version: str | None
) -> Parsed:
    session_id = headers.get(SESSION_HEADER) or None
    missing_session = GatewayError(
        ErrorCode.INVALID_REQUEST,
        "missing Mcp-Session-Id header: call initialize first (protocol 2025-11-25), "
        f"or speak {LATEST_MODERN_VERSION} with an MCP-Protocol-Version header and per-request _meta",
        jsonrpc_code=INVALID_REQUEST,
        status=400,
    )
    if http_method in ("GET", "DELETE"):
        if http_method == "GET" and not _accepts(headers, _SSE_TYPES):
            return _reject(
                GatewayError(
                    ErrorCode.INVALID_REQUEST, "the Accept header must include text/event-stream", status=406
                )
            )
        if session_id is None:
            return _reject(missing_session)
        if http_method == "GET":
            return OpenStream(service=service, session_id=session_id, protocol_version=version)
        return EndSession(service=service, session_id=session_id, protocol_version=version)
    if http_method != "POST":
        return _reject(
            GatewayError(
                ErrorCode.INVALID_REQUEST,
                f"{_shown(http_method, 10)} is not allowed: use POST, GET (event stream) or DELETE (end session)",
                jsonrpc_code=INVALID_REQUEST,
                status=405,
            ),
            headers={"Allow": "GET, POST, DELETE"},
        )
    read = _read_post(headers, body)
    if isinstance(read, Rejection):
        return read
    message, rpc_id = read
    method = message.get("method")
    if method is None:  # the client's answer to a server request: this server sends none
        if "result" not in message and "error" not in message:
            return _reject(_protocol(INVALID_REQUEST, "a JSON-RPC message needs a 'method'"), rpc_id)
        if session_id is None:
            return _reject(missing_session)
        return Acknowledge(era="legacy", service=service, method=None, session_id=session_id)
    if "id" not in message:
        if session_id is None and method != "notifications/initialized":
            return _reject(missing_session)
        return Acknowledge(
            era="legacy", service=service, method=method, session_id=session_id, cancelled=_cancelled(message)
        )
    if method != "initialize" and session_id is None:
        return _reject(missing_session, rpc_id)
    params = message.get("params") or {}
    return McpRequest(
        era="legacy",
        service=service,
        rpc_id=rpc_id,
        method=method,
        params=params,
        protocol_version=version,
        session_id=session_id if method != "initialize" else None,
        headers=headers,
    )


def _cancelled(message: Mapping[str, Any]) -> str | int | None:
    if message.get("method") != "notifications/cancelled":
        return None
    params = message.get("params")
    return cancelled_request_id_from_params(params if isinstance(params, dict) else None)


def client_request(session: str | None, rpc_id: str | int) -> str:
    """How a client names its request in `notifications/cancelled`, as the kit matches it (within
    the caller's org and API key): `<session id>/<id>`, `-/<id>` with no session (2026-07-28).
    A session's random id keeps two sessions of one key apart; at 2026-07-28 two clients of one
    key that use the same JSON-RPC id at once are not told apart (the SDK client cancels by
    closing the response instead, which names the one request)."""
    return f"{session or '-'}/{msgspec.json.encode(rpc_id).decode()}"


def modern_envelope(protocol_version: str, client_info: Any, client_capabilities: Any) -> dict[str, Any]:
    """The per-request `_meta` keys a bus request carries (the services are stateless)."""
    meta: dict[str, Any] = {
        PROTOCOL_VERSION_META_KEY: protocol_version,
        CLIENT_CAPABILITIES_META_KEY: client_capabilities if isinstance(client_capabilities, dict) else {},
    }
    if client_info is not None:
        meta[CLIENT_INFO_META_KEY] = client_info
    return meta


def wants_event_stream(request: McpRequest) -> bool:
    """Whether to answer this POST as an SSE stream: the client accepts `text/event-stream`
    and asked for progress (`params._meta.progressToken`); otherwise the answer is plain JSON."""
    accept = request.headers.get("accept")
    if not accept or "text/event-stream" not in _media_types(accept):
        return False
    meta = request.params.get("_meta")
    token = meta.get("progressToken") if isinstance(meta, dict) else None
    return isinstance(token, str | int) and not isinstance(token, bool)
