"""The request parser: examples of each outcome, and a hypothesis fuzz that it is total."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp_types import HEADER_MISMATCH, INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR

from mcpmesh.gateway import wire
from mcpmesh.gateway.errors import GatewayError
from mcpmesh.gateway.wire import (
    Acknowledge,
    EndSession,
    McpRequest,
    OpenStream,
    Rejection,
    origin_allowed,
    parse_request,
)

MODERN = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
}
ORIGINS = ("http://localhost",)


def modern_headers(method: str = "tools/list", **extra: str) -> dict[str, str]:
    return {"mcp-protocol-version": MODERN, "mcp-method": method, **extra}


def body(method: str = "tools/list", params: dict[str, Any] | None = None, **extra: Any) -> bytes:
    p = {**(params or {}), "_meta": META}
    return msgspec.json.encode({"jsonrpc": "2.0", "id": 7, "method": method, "params": p, **extra})


def parse(method: str, headers: dict[str, str], raw: bytes, service: str | None = None) -> Any:
    return parse_request(method, service, headers, raw, allowed_origins=ORIGINS)


def test_a_modern_request_is_routed_with_its_envelope() -> None:
    parsed = parse(
        "POST",
        modern_headers("tools/call", **{"mcp-name": "dxp_hello"}),
        body("tools/call", {"name": "dxp_hello"}),
    )
    assert isinstance(parsed, McpRequest)
    assert parsed.era == "modern" and parsed.method == "tools/call" and parsed.rpc_id == 7
    assert parsed.protocol_version == MODERN and parsed.client_capabilities == {}
    assert parsed.params["name"] == "dxp_hello"


def test_legacy_is_chosen_without_a_modern_version_header() -> None:
    init = msgspec.json.encode({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}})
    parsed = parse("POST", {}, init)
    assert isinstance(parsed, McpRequest) and parsed.era == "legacy" and parsed.session_id is None
    parsed = parse(
        "POST",
        {"mcp-protocol-version": "2025-11-25", "mcp-session-id": "s"},
        init.replace(b"initialize", b"tools/list"),
    )
    assert isinstance(parsed, McpRequest) and parsed.era == "legacy" and parsed.session_id == "s"
    assert isinstance(parse("GET", {"mcp-session-id": "s"}, b""), OpenStream)
    assert isinstance(parse("DELETE", {"mcp-session-id": "s"}, b""), EndSession)


def test_notifications_and_client_responses_are_acknowledged() -> None:
    note = msgspec.json.encode({"jsonrpc": "2.0", "method": "notifications/cancelled"})
    assert isinstance(parse("POST", modern_headers("notifications/cancelled"), note), Acknowledge)
    assert isinstance(parse("POST", {"mcp-session-id": "s"}, note), Acknowledge)
    response = msgspec.json.encode({"jsonrpc": "2.0", "id": 3, "result": {}})
    assert isinstance(parse("POST", {"mcp-session-id": "s"}, response), Acknowledge)


def rejection(parsed: Any) -> Rejection:
    assert isinstance(parsed, Rejection), parsed
    return parsed


def test_rejections_carry_status_and_jsonrpc_code() -> None:
    cases: list[tuple[Any, int, int]] = [
        (parse("POST", modern_headers(), b"{"), 400, PARSE_ERROR),
        (parse("POST", modern_headers(), b'{"a":"\xff"}'), 400, PARSE_ERROR),
        (parse("POST", modern_headers(), b"[]"), 400, INVALID_REQUEST),
        (parse("POST", modern_headers(), body()[:-1] + b',"id":true}'), 400, INVALID_REQUEST),
        (parse("POST", modern_headers("tools/call"), body()), 400, HEADER_MISMATCH),
        (
            parse(
                "POST",
                modern_headers(),
                msgspec.json.encode({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
            ),
            400,
            INVALID_PARAMS,
        ),
        (parse("GET", modern_headers(), b""), 405, INVALID_REQUEST),
        (
            parse("POST", {}, msgspec.json.encode({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})),
            400,
            INVALID_REQUEST,
        ),
        (parse("PATCH", {}, b""), 405, INVALID_REQUEST),
    ]
    for parsed, status, code in cases:
        rej = rejection(parsed)
        assert rej.status == status, rej
        assert rej.error.jsonrpc_code == code, rej
    assert rejection(parse("GET", modern_headers(), b"")).headers["Allow"] == "POST"
    assert (
        rejection(parse("POST", {**modern_headers(), "origin": "https://evil.example"}, body())).status == 403
    )
    assert rejection(parse("POST", {**modern_headers(), "accept": "text/html"}, body())).status == 406
    assert rejection(parse("POST", {**modern_headers(), "content-type": "text/plain"}, body())).status == 415
    assert rejection(parse("POST", modern_headers(), body(), service="Bad Name")).status == 404


def test_origins() -> None:
    assert origin_allowed(None, ())
    assert origin_allowed("http://localhost:6274", ORIGINS)
    assert origin_allowed("http://localhost", ORIGINS)
    assert not origin_allowed("http://localhost.evil.com", ORIGINS)
    assert not origin_allowed("http://localhost:80x", ORIGINS)
    assert origin_allowed("https://anything", ("*",))


# -- fuzz ---------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
methods = st.sampled_from(
    ["tools/list", "tools/call", "initialize", "ping", "resources/read", "prompts/get", "notifications/x", ""]
)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """Mostly-plausible JSON-RPC bodies, with random damage."""
    message: dict[str, Any] = {}
    if draw(st.booleans()):
        message["jsonrpc"] = draw(st.sampled_from(["2.0", "1.0", 2]))
    if draw(st.booleans()):
        message["id"] = draw(st.none() | st.booleans() | st.integers() | st.text(max_size=300) | st.floats())
    if draw(st.booleans()):
        message["method"] = draw(methods | json_values)
    if draw(st.booleans()):
        params: Any = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3) | json_values)
        if isinstance(params, dict) and draw(st.booleans()):
            params["_meta"] = draw(st.just(META) | json_values)
        if isinstance(params, dict) and draw(st.booleans()):
            params["name"] = draw(st.text(max_size=20) | json_values)
        message["params"] = params
    raw = msgspec.json.encode(message)
    damage = draw(st.sampled_from(["none", "truncate", "bytes", "batch", "prefix"]))
    if damage == "truncate":
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif damage == "bytes":
        raw = draw(st.binary(max_size=200))
    elif damage == "batch":
        raw = b"[" + raw + b"," + raw + b"]"
    elif damage == "prefix":
        raw = draw(st.binary(max_size=5)) + raw
    return raw


header_names = st.sampled_from(
    [
        "mcp-protocol-version",
        "mcp-method",
        "mcp-name",
        "mcp-session-id",
        "accept",
        "content-type",
        "origin",
        "x-other",
    ]
)
header_values = st.sampled_from(
    [
        "2026-07-28",
        "2025-11-25",
        "tools/list",
        "tools/call",
        "application/json",
        "text/event-stream",
        "*/*",
        "",
        "http://localhost:1",
    ]
) | st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    http_method=st.sampled_from(["POST", "GET", "DELETE", "PUT", "OPTIONS"]),
    service=st.none() | st.sampled_from(["dxp", "context", "X", "a" * 40]) | st.text(max_size=10),
    headers=st.dictionaries(header_names, header_values, max_size=6),
    raw=messages(),
)
def test_fuzz_the_parser_never_raises_and_always_answers_well(
    http_method: str, service: str | None, headers: dict[str, str], raw: bytes
) -> None:
    # The inner parser, without parse_request's last-resort net: a bug must show here, not hide.
    parsed = wire._parse(http_method, service, headers, raw, ORIGINS, None)
    if isinstance(parsed, Rejection):
        assert 400 <= parsed.status < 500
        assert isinstance(parsed.error, GatewayError)
        assert parsed.error.message and len(parsed.error.message) < 400
        encoded = msgspec.json.encode(
            {"jsonrpc": "2.0", "id": parsed.rpc_id, "error": parsed.error.error_body()}
        )
        decoded = msgspec.json.decode(encoded)
        assert decoded["error"]["code"] == parsed.error.jsonrpc_code
        assert parsed.rpc_id is None or isinstance(parsed.rpc_id, str | int)
    elif isinstance(parsed, McpRequest):
        assert http_method == "POST"
        assert isinstance(parsed.method, str) and parsed.method
        assert isinstance(parsed.rpc_id, str | int) and not isinstance(parsed.rpc_id, bool)
        assert isinstance(parsed.params, dict)
        if parsed.era == "modern":
            assert parsed.protocol_version == headers.get("mcp-protocol-version")
        else:
            assert parsed.method == "initialize" or parsed.session_id
    elif isinstance(parsed, Acknowledge):
        assert http_method == "POST"
    else:
        assert isinstance(parsed, OpenStream | EndSession)
        assert parsed.session_id
