"""Bad input gets the right status and a clear JSON-RPC error; never a 500, never another org's data."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from mcp_types import HEADER_MISMATCH
from multidict import CIMultiDict

MODERN = "2026-07-28"


def modern(method: str = "tools/list", **extra: str) -> dict[str, str]:
    return {"mcp-protocol-version": MODERN, "mcp-method": method, **extra}


def envelope(
    method: str = "tools/list", params: dict[str, Any] | None = None, rpc_id: Any = 1
) -> dict[str, Any]:
    p = dict(params or {})
    p["_meta"] = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    return {"jsonrpc": "2.0", "id": rpc_id, "method": method, "params": p}


@pytest.fixture
async def gw_key(dxp_mesh: Any) -> tuple[Any, str]:
    mesh, gw = dxp_mesh
    _org, key = await mesh.tenant(scopes=["dxp:read"], name="Secret Corp Name")
    return gw, key


CASES: list[tuple[str, Any, dict[str, str], int, int]] = [
    ("malformed JSON", b'{"jsonrpc": "2.0", "id": 1, ', modern(), 400, -32700),
    ("bad UTF-8", b'{"jsonrpc":"2.0","id":1,"method":"tools/list","x":"\xff\xfe"}', modern(), 400, -32700),
    ("empty body", b"", modern(), 400, -32700),
    ("deep nesting", b"[" * 5000 + b"]" * 5000, modern(), 400, -32700),
    ("batch", [envelope(), envelope(rpc_id=2)], modern(), 400, -32600),
    ("not an object", b'"hello"', modern(), 400, -32600),
    ("wrong jsonrpc", {"jsonrpc": "1.0", "id": 1, "method": "tools/list"}, modern(), 400, -32600),
    ("boolean id", {**envelope(), "id": True}, modern(), 400, -32600),
    ("null id", {**envelope(), "id": None}, modern(), 400, -32600),
    (
        "params not an object",
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": [1]},
        modern(),
        400,
        -32600,
    ),
    ("missing envelope", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, modern(), 400, -32602),
    ("method header mismatch", envelope("tools/list"), modern("tools/call"), 400, HEADER_MISMATCH),
    ("missing method header", envelope(), {"mcp-protocol-version": MODERN}, 400, HEADER_MISMATCH),
    (
        "name header mismatch",
        envelope("tools/call", {"name": "dxp.hello", "arguments": {"text": "x"}}),
        modern("tools/call", **{"mcp-name": "dxp.other"}),
        400,
        HEADER_MISMATCH,
    ),
    (
        "unsupported version",
        envelope(),
        {"mcp-protocol-version": "2099-01-01", "mcp-method": "tools/list"},
        400,
        HEADER_MISMATCH,
    ),
    ("unknown method", envelope("bogus/method"), modern("bogus/method"), 404, -32601),
    ("initialize at 2026", envelope("initialize"), modern("initialize"), 404, -32601),
    (
        "unknown tool",
        envelope("tools/call", {"name": "dxp.nope"}),
        modern("tools/call", **{"mcp-name": "dxp.nope"}),
        400,
        -32602,
    ),
    (
        "unprefixed tool",
        envelope("tools/call", {"name": "hello"}),
        modern("tools/call", **{"mcp-name": "hello"}),
        400,
        -32602,
    ),
    (
        "unknown service",
        envelope("tools/call", {"name": "rag.search"}),
        modern("tools/call", **{"mcp-name": "rag.search"}),
        400,
        -32602,
    ),
    (
        "tool name not a string",
        envelope("tools/call", {"name": 5}),
        modern("tools/call"),
        400,
        HEADER_MISMATCH,
    ),
    (
        "subscriptions",
        envelope("resources/subscribe", {"uri": "dxp://greeting"}),
        modern("resources/subscribe"),
        404,
        -32601,
    ),
    (
        "resource of no service",
        envelope("resources/read", {"uri": "file:///etc/passwd"}),
        modern("resources/read", **{"mcp-name": "file:///etc/passwd"}),
        400,
        -32602,
    ),
]


@pytest.mark.parametrize(("case", "body", "headers", "status", "code"), CASES, ids=[c[0] for c in CASES])
async def test_bad_requests_get_the_right_status_and_error(
    gw_key: tuple[Any, str], case: str, body: Any, headers: dict[str, str], status: int, code: int
) -> None:
    gw, key = gw_key
    got_status, reply, _ = await gw.post(body, key=key, headers=headers)
    assert got_status == status, (case, reply)
    assert reply["jsonrpc"] == "2.0"
    assert reply["error"]["code"] == code, (case, reply)
    message = reply["error"]["message"]
    assert message and "Traceback" not in message and "Secret Corp" not in message


async def test_notifications_are_accepted_with_202(gw_key: tuple[Any, str]) -> None:
    gw, key = gw_key
    status, body, _ = await gw.post(
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}},
        key=key,
        headers=modern("notifications/cancelled"),
    )
    assert status == 202 and body is None


async def test_modern_get_and_delete_are_405(gw_key: tuple[Any, str]) -> None:
    gw, key = gw_key
    for method in ("GET", "DELETE", "PUT"):
        resp = await gw.client.request(method, "/mcp", headers={"x-api-key": key, **modern()})
        assert resp.status == 405
        assert resp.headers["Allow"] == "POST"
        assert (await resp.json())["error"]["code"] == -32600


async def test_content_negotiation(gw_key: tuple[Any, str]) -> None:
    gw, key = gw_key
    status, _, _ = await gw.post(envelope(), key=key, headers={**modern(), "accept": "text/html"})
    assert status == 406
    status, _, _ = await gw.post(envelope(), key=key, headers={**modern(), "content-type": "text/plain"})
    assert status == 415


async def test_oversized_body_is_413(dxp_mesh: Any) -> None:
    mesh, _ = dxp_mesh
    gw = await mesh.gateway(max_body_bytes=2048)
    _org, key = await mesh.tenant()
    big = envelope("tools/call", {"name": "dxp.hello", "arguments": {"text": "x" * 5000}})
    status, body, _ = await gw.post(big, key=key, headers=modern("tools/call", **{"mcp-name": "dxp.hello"}))
    assert status == 413
    assert "2048 bytes" in body["error"]["message"]


async def test_disallowed_origin_is_403_and_localhost_is_fine(gw_key: tuple[Any, str]) -> None:
    gw, key = gw_key
    status, body, _ = await gw.post(
        envelope(), key=key, headers={**modern(), "origin": "https://evil.example"}
    )
    assert status == 403 and "Origin" in body["error"]["message"]
    status, _, _ = await gw.post(envelope(), key=key, headers={**modern(), "origin": "http://localhost:6274"})
    assert status == 200


async def test_duplicated_routing_header_is_rejected(gw_key: tuple[Any, str]) -> None:
    gw, key = gw_key
    headers = CIMultiDict(
        {"x-api-key": key, "content-type": "application/json", "mcp-protocol-version": MODERN}
    )
    headers.add("mcp-method", "tools/list")
    headers.add("mcp-method", "tools/list")
    resp = await gw.client.post("/mcp", data=msgspec.json.encode(envelope()), headers=headers)
    assert resp.status == 400
    assert "more than once" in (await resp.json())["error"]["message"]


async def test_unknown_service_path_is_404(gw_key: tuple[Any, str]) -> None:
    gw, key = gw_key
    for path in ("/mcp/rag", "/mcp/NOT-A-NAME"):
        status, body, _ = await gw.post(envelope(), key=key, headers=modern(), path=path)
        assert status == 404, (path, body)
        assert body["error"]["message"]


async def test_cors_for_allowed_browser_origins(gw_key: tuple[Any, str]) -> None:
    gw, key = gw_key
    origin = "http://localhost:6274"
    preflight = await gw.client.options(
        "/mcp",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "x-api-key, mcp-method, Mcp-Param-Region",
        },
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    assert "x-api-key" in preflight.headers["Access-Control-Allow-Headers"]
    assert "Mcp-Param-Region" in preflight.headers["Access-Control-Allow-Headers"]
    status, _, headers = await gw.post(envelope(), key=key, headers={**modern(), "origin": origin})
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == origin
    assert "mcp-session-id" in headers["Access-Control-Expose-Headers"]
    refused = await gw.client.options("/mcp", headers={"origin": "https://evil.example"})
    assert refused.status == 403
    assert "Access-Control-Allow-Origin" not in refused.headers
