"""Bad input gets the right status and a clear JSON-RPC error; never a 500, never another org's data."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest
from mcp_types import HEADER_MISMATCH
from multidict import CIMultiDict

from mcpmesh.service.testing import internals_in, logged_failures

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
        envelope("tools/call", {"name": "dxp_hello", "arguments": {"text": "x"}}),
        modern("tools/call", **{"mcp-name": "dxp_other"}),
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
        envelope("tools/call", {"name": "dxp_nope"}),
        modern("tools/call", **{"mcp-name": "dxp_nope"}),
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
        envelope("tools/call", {"name": "rag_search"}),
        modern("tools/call", **{"mcp-name": "rag_search"}),
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
    big = envelope("tools/call", {"name": "dxp_hello", "arguments": {"text": "x" * 5000}})
    status, body, _ = await gw.post(big, key=key, headers=modern("tools/call", **{"mcp-name": "dxp_hello"}))
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


# -- inputs that once failed inside a service (issue 8): end to end through the gateway ------------------

YEAR_1_EAST = "0001-01-01T00:00:00+05:00"  # before year 1 once in UTC
YEAR_9999_WEST = "9999-12-31T23:59:59-05:00"  # after year 9999 once in UTC
CONTEXT_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("share", {"expires_in_s": 1e12}, "expires_in_s must be a number of seconds above 0"),
    ("share", {"expires_in_s": 1e308}, "expires_in_s must be a number of seconds above 0"),
    ("share", {"expires_in_s": "nan"}, "expires_in_s must be a number of seconds above 0"),
    ("share", {"expires_in_s": "-inf"}, "expires_in_s must be a number of seconds above 0"),
    ("share", {"expires_at": YEAR_1_EAST}, "expires_at must be an ISO 8601 timestamp between the years 1"),
    ("share", {"expires_at": YEAR_9999_WEST}, "expires_at must be an ISO 8601 timestamp between the years 1"),
    ("list", {"updated_since": YEAR_1_EAST}, "updated_since must be an ISO 8601 timestamp between"),
    ("list", {"updated_since": YEAR_9999_WEST}, "updated_since must be an ISO 8601 timestamp between"),
    ("get", {"last_n": 10**30}, "last_n must be a positive integer (at most 9007199254740991)"),
    ("create", {"title": "t", "metadata": {"n": 10**30}}, "integers must fit in 64 bits"),
    ("create", {"title": "x" * 100_000}, "title must be at most 200 characters"),
    ("get", {"ctx_id": 5}, "invalid arguments: ctx_id: expected a string"),
    ("get", {"last_n": "abc"}, "invalid arguments: last_n: expected an integer"),
    ("append", {"entries": [{"role": "user", "content": {"a": 1}}]}, "entries[0].content: expected a string"),
    ("append", {"entries": "x" * 100_000}, "invalid arguments: entries: expected a list"),
]


@pytest.mark.parametrize(("tool", "args", "expected"), CONTEXT_CASES, ids=[c[2][:30] for c in CONTEXT_CASES])
async def test_context_inputs_that_once_failed_inside_get_a_clear_tool_error(
    context_mesh: Any, caplog: pytest.LogCaptureFixture, tool: str, args: dict[str, Any], expected: str
) -> None:
    mesh, gw = context_mesh
    caplog.set_level(logging.INFO)
    _org, key = await mesh.tenant(scopes=["context:*"])
    status, created, _ = await gw.rpc(
        "tools/call", {"name": "context_create", "arguments": {"title": "t"}}, key=key
    )
    assert status == 200, created
    ctx_id = created["result"]["structuredContent"]["ctx_id"]
    needs = {
        "share": {"ctx_id": ctx_id, "grantee": "org-b12"},
        "get": {"ctx_id": ctx_id},
        "append": {"ctx_id": ctx_id},
    }
    params = {"name": f"context_{tool}", "arguments": {**needs.get(tool, {}), **args}}
    status, body, _ = await gw.rpc("tools/call", params, key=key)
    assert status == 200 and body["result"]["isError"] is True, body
    text = body["result"]["content"][0]["text"]
    assert "invalid_request" in text and expected in text, text
    assert internals_in(msgspec.json.encode(body).decode()) == [], body
    assert "x" * 100 not in text and "0" * 30 not in text
    assert logged_failures(caplog.records) == []


@pytest.mark.parametrize(
    ("method", "params", "code", "message"),
    [
        ("prompts/get", {"name": "dxp_nope"}, "not_found", "unknown prompt 'nope': prompts/list names"),
        ("prompts/get", {"name": "dxp_greet"}, "invalid_request", "invalid arguments: name: required"),
        (
            "prompts/get",
            {"name": "dxp_greet", "arguments": {"name": "Ann", "tone": "warm"}},
            "invalid_request",
            "'tone': not an argument of this prompt",
        ),
        (
            "resources/read",
            {"uri": "dxp://nope"},
            "not_found",
            "unknown resource 'dxp://nope': resources/list",
        ),
        ("resources/read", {"uri": "dxp://" + "x" * 5000}, "not_found", "unknown resource 'dxp://xxx"),
    ],
)
async def test_unknown_prompts_and_resources_are_clear_client_errors_not_502(
    gw_key: tuple[Any, str],
    caplog: pytest.LogCaptureFixture,
    method: str,
    params: dict[str, Any],
    code: str,
    message: str,
) -> None:
    gw, key = gw_key
    caplog.set_level(logging.INFO)
    status, body, _ = await gw.rpc(method, params, key=key)
    assert status == 400, body
    assert body["error"]["code"] == -32602 and body["error"]["data"]["code"] == code, body
    assert message in body["error"]["message"] and len(body["error"]["message"]) < 500, body
    assert internals_in(msgspec.json.encode(body).decode()) == [], body
    assert logged_failures(caplog.records) == []
    status, body, _ = await gw.rpc(
        "prompts/get", {"name": "dxp_greet", "arguments": {"name": "Ann"}}, key=key
    )
    assert status == 200 and body["result"]["messages"][0]["content"]["text"] == "Say hello to Ann"


async def test_context_resources_of_unknown_or_malformed_ids_are_clear_client_errors(
    context_mesh: Any, caplog: pytest.LogCaptureFixture
) -> None:
    mesh, gw = context_mesh
    caplog.set_level(logging.INFO)
    _org, key = await mesh.tenant(scopes=["context:*"])
    for uri, code, message in [
        ("context://ctx-" + "a" * 24, "not_found", "not found"),
        ("context://ctx-nope", "invalid_request", "invalid context id 'ctx-nope'"),
        ("context://ctx-" + "a" * 24 + "/entries", "not_found", "unknown resource"),
    ]:
        status, body, _ = await gw.rpc("resources/read", {"uri": uri}, key=key)
        assert status == 400 and body["error"]["code"] == -32602, (uri, body)
        assert body["error"]["data"]["code"] == code and message in body["error"]["message"], (uri, body)
        assert internals_in(msgspec.json.encode(body).decode()) == [], body
    assert logged_failures(caplog.records) == []
