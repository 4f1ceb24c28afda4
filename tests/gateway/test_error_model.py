"""One error model end to end: a tool failure three services down reaches the client as an
`isError` result with its code, retryability and details; 2025-11-25 sessions get JSON-RPC
errors with HTTP 200; a tool's time budget caps its deadline; every name `/mcp` lists is one
every client accepts."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context
from mcp.shared._httpx_utils import create_mcp_http_client

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.proto.ids import TOOL_NAME_PATTERN
from mcpmesh.service import MeshService, call_of
from mcpmesh.tenancy import stamp as stamps

LEGACY = "2025-11-25"


def legacy_headers(session: str) -> dict[str, str]:
    return {"mcp-protocol-version": LEGACY, "mcp-session-id": session}


#: What each hop raises or relays: rag fails, logs relays rag, dxp relays logs.
FAILURES = {
    "unavailable": MeshException(
        ErrorCode.UNAVAILABLE, "the provider is down", retryable=True, details={"provider": "p1"}
    ),
    # An override of the code's default retryability must survive the hops too.
    "rate_limited": MeshException(ErrorCode.RATE_LIMITED, "over the provider's quota", retryable=False),
}


@pytest.fixture
def three_hops(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let dxp call logs and rag, and logs call rag (stamp audience and NATS permissions): set
    before the test's nats-server renders its users, so request this fixture before `mesh`."""
    monkeypatch.setitem(stamps.DOWNSTREAM, "dxp", ("logs", "rag"))
    monkeypatch.setitem(stamps.DOWNSTREAM, "logs", ("rag",))


def hop(name: str, callee: str) -> MeshService:
    svc = MeshService(name)

    @svc.tool(access="read")
    async def relay(kind: str, ctx: Context) -> dict[str, Any]:
        """Call the next service's relay (or its fail) and return what it returned."""
        tool = "relay" if callee != "rag" else "fail"
        return dict(await call_of(ctx).call_tool(callee, tool, {"kind": kind}))

    return svc


def last_hop() -> MeshService:
    svc = MeshService("rag")

    @svc.tool(access="read")
    async def fail(kind: str) -> str:
        raise FAILURES[kind]

    @svc.tool(access="read", budget_s=1)
    async def nap(seconds: float) -> str:
        """Sleeps longer than its budget allows."""
        await asyncio.sleep(seconds)
        return "woke"

    return svc


async def chain(mesh: Any) -> Any:
    await mesh.service(hop("dxp", "logs"))
    await mesh.service(hop("logs", "rag"))
    await mesh.service(last_hop())
    gw = await mesh.gateway()
    await mesh.wait_discovered("dxp", "logs", "rag")
    return gw


@pytest.mark.parametrize("kind", sorted(FAILURES))
async def test_a_tool_error_three_hops_down_keeps_its_code_and_retryability(
    three_hops: None, mesh: Any, kind: str
) -> None:
    gw = await chain(mesh)
    _org, key = await mesh.tenant()
    raised = FAILURES[kind].error
    status, body, _ = await gw.rpc("tools/call", {"name": "dxp_relay", "arguments": {"kind": kind}}, key=key)
    assert status == 200, body
    result = body["result"]
    assert result["isError"] is True
    assert result["structuredContent"] == {
        "code": raised.code.value,
        "message": raised.message,
        "retryable": raised.retryable,
        "details": raised.details,
    }
    assert result["content"][0]["text"] == f"{raised.code.value}: {raised.message}"

    # The same through a 2025-11-25 session: the tool error is a result, with HTTP 200.
    session = await gw.legacy_session(key)
    call = {
        "jsonrpc": "2.0",
        "id": 9,
        "method": "tools/call",
        "params": {"name": "dxp_relay", "arguments": {"kind": kind}},
    }
    status, legacy, _ = await gw.post(call, key=key, headers=legacy_headers(session))
    assert status == 200 and legacy["id"] == 9
    assert legacy["result"]["isError"] is True
    assert legacy["result"]["structuredContent"]["code"] == raised.code.value
    assert legacy["result"]["structuredContent"]["retryable"] is raised.retryable


async def test_the_sdk_client_reads_the_structured_error(three_hops: None, mesh: Any) -> None:
    gw = await chain(mesh)
    _org, key = await mesh.tenant()
    async with (
        create_mcp_http_client(headers={"x-api-key": key}) as http,
        Client(streamable_http_client(gw.url, http_client=http)) as client,
    ):
        result = await client.call_tool("dxp_relay", {"kind": "unavailable"})
        assert result.is_error
        assert result.structured_content == {
            "code": "unavailable",
            "message": "the provider is down",
            "retryable": True,
            "details": {"provider": "p1"},
        }


async def test_legacy_session_errors_travel_with_http_200_and_the_request_id(
    three_hops: None, mesh: Any
) -> None:
    gw = await chain(mesh)
    _org, key = await mesh.tenant(scopes=["dxp:read"])
    session = await gw.legacy_session(key)
    hdrs = legacy_headers(session)
    cases = [
        # An unknown tool, a tool the key has no scope for, an unknown method: JSON-RPC errors.
        ({"name": "dxp_nope", "arguments": {}}, "tools/call", -32602),
        ({"name": "rag_fail", "arguments": {"kind": "unavailable"}}, "tools/call", -32003),
        ({}, "no/such/method", -32601),
    ]
    for n, (params, method, code) in enumerate(cases, start=20):
        body = {"jsonrpc": "2.0", "id": n, "method": method, "params": params}
        status, reply, _ = await gw.post(body, key=key, headers=hdrs)
        assert status == 200, (method, reply)
        assert reply["id"] == n and reply["error"]["code"] == code, reply
    # What the spec keeps at HTTP level stays there, still with the id when it could be read.
    status, reply, _ = await gw.post(
        {"jsonrpc": "2.0", "id": 30, "method": "ping"}, key=key, headers=legacy_headers("forged")
    )
    assert status == 404 and reply["id"] == 30
    status, _, _ = await gw.post({"jsonrpc": "2.0", "id": 31, "method": "ping"}, key="mk_wrong", headers=hdrs)
    assert status == 401
    # The 2026-07-28 revision keeps its HTTP mapping.
    status, reply, _ = await gw.rpc("tools/call", {"name": "dxp_nope", "arguments": {}}, key=key, rpc_id=32)
    assert status == 400 and reply["id"] == 32


async def test_a_tools_budget_caps_its_deadline(three_hops: None, mesh: Any) -> None:
    gw = await chain(mesh)  # the gateway's MCPMESH_CALL_TIMEOUT_S stays 30 s
    _org, key = await mesh.tenant()
    status, listed, _ = await gw.rpc("tools/list", key=key)
    budgets = {t["name"]: t["_meta"]["mcpmesh/budget_s"] for t in listed["result"]["tools"]}
    assert budgets["rag_nap"] == 1 and budgets["rag_fail"] == 30
    status, body, _ = await gw.rpc("tools/call", {"name": "rag_nap", "arguments": {"seconds": 20}}, key=key)
    assert status == 504, body
    assert body["error"]["data"]["code"] == "timeout"
    # Read-only: the client is told a retry is safe.
    assert body["error"]["data"]["retryable"] is True


async def test_every_name_on_mcp_is_one_every_client_accepts(three_hops: None, mesh: Any) -> None:
    await mesh.dxp()
    await mesh.logs()
    await mesh.service(last_hop())
    gw = await mesh.gateway()
    await mesh.wait_discovered("dxp", "logs", "rag")
    _org, key = await mesh.tenant()
    _, tools, _ = await gw.rpc("tools/list", key=key)
    _, prompts, _ = await gw.rpc("prompts/list", key=key)
    names = [t["name"] for t in tools["result"]["tools"]] + [p["name"] for p in prompts["result"]["prompts"]]
    assert {"dxp_hello", "logs_tail", "rag_nap", "dxp_greet", "logs_summarize"} <= set(names)
    assert len(names) == len(set(names))
    assert all(re.fullmatch(TOOL_NAME_PATTERN, n) for n in names), names
