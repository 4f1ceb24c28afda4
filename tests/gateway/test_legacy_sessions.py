"""2025-11-25 sessions over raw HTTP: ids any replica accepts, DELETE seen by all, the GET stream."""

from __future__ import annotations

import asyncio
from typing import Any

LEGACY = "2025-11-25"


def init_body(rpc_id: int = 1) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": rpc_id,
        "method": "initialize",
        "params": {
            "protocolVersion": LEGACY,
            "capabilities": {"roots": {"listChanged": True}},
            "clientInfo": {"name": "raw", "version": "1"},
        },
    }


def legacy_headers(session: str | None = None) -> dict[str, str]:
    hdrs = {"mcp-protocol-version": LEGACY}
    if session:
        hdrs["mcp-session-id"] = session
    return hdrs


async def open_session(gw: Any, key: str, path: str = "/mcp") -> str:
    return str(await gw.legacy_session(key, path))


async def test_session_opened_on_one_replica_works_on_another_and_delete_ends_it_everywhere(
    mesh: Any,
) -> None:
    await mesh.dxp()
    a = await mesh.gateway()
    b = await mesh.gateway()
    await mesh.wait_discovered("dxp")
    _org, key = await mesh.tenant(scopes=["dxp:read"])
    session = await open_session(a, key)
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "dxp_hello", "arguments": {"text": "x"}},
    }
    status, body, _ = await b.post(call, key=key, headers=legacy_headers(session))
    assert status == 200, body
    assert body["result"]["structuredContent"]["text"] == "hi x"
    assert "resultType" not in body["result"] and "_meta" not in body["result"]

    resp = await a.client.delete("/mcp", headers={"x-api-key": key, **legacy_headers(session)})
    assert resp.status == 200
    status, body, _ = await b.post(call, key=key, headers=legacy_headers(session))
    assert status == 404
    assert "session not found" in body["error"]["message"]


async def test_a_session_is_bound_to_its_key_endpoint_and_version(mesh: Any) -> None:
    await mesh.dxp()
    gw = await mesh.gateway()
    await mesh.wait_discovered("dxp")
    org, key = await mesh.tenant(scopes=["dxp:read"])
    other_key = (
        await mesh.admin("POST", f"/admin/orgs/{org}/keys", {"name": "k2", "scopes": ["*"]}, expect=201)
    )["secret"]
    session = await open_session(gw, key)
    ping = {"jsonrpc": "2.0", "id": 3, "method": "ping"}
    assert (await gw.post(ping, key=key, headers=legacy_headers(session)))[0] == 200
    # Another key of the same org cannot ride the session.
    status, body, _ = await gw.post(ping, key=other_key, headers=legacy_headers(session))
    assert status == 404 and "another API key" in body["error"]["message"]
    # Nor can the session be used on another endpoint.
    status, body, _ = await gw.post(ping, key=key, headers=legacy_headers(session), path="/mcp/dxp")
    assert status == 404
    # A version header that disagrees with the negotiated one is a bad request.
    status, body, _ = await gw.post(
        ping, key=key, headers={"mcp-session-id": session, "mcp-protocol-version": "2025-06-18"}
    )
    assert status == 400 and "negotiated" in body["error"]["message"]
    # Tampered or made-up ids are unknown sessions.
    forged = session[:-4] + ("AAAA" if not session.endswith("AAAA") else "BBBB")
    assert (await gw.post(ping, key=key, headers=legacy_headers(forged)))[0] == 404
    assert (await gw.post(ping, key=key, headers=legacy_headers("made-up")))[0] == 404


async def test_requests_without_a_session_are_refused_with_guidance(mesh: Any) -> None:
    await mesh.dxp()
    gw = await mesh.gateway()
    _org, key = await mesh.tenant()
    status, body, _ = await gw.post({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, key=key)
    assert status == 400
    assert "Mcp-Session-Id" in body["error"]["message"] and "initialize" in body["error"]["message"]


async def test_initialize_with_bad_params_is_invalid_params(mesh: Any) -> None:
    gw = await mesh.gateway()
    _org, key = await mesh.tenant()
    status, body, headers = await gw.post(
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}, key=key
    )
    assert status == 400 and body["error"]["code"] == -32602
    assert "Mcp-Session-Id" not in headers


async def test_initialize_negotiates_down_to_a_handshake_version(mesh: Any) -> None:
    gw = await mesh.gateway()
    _org, key = await mesh.tenant()
    body = init_body()
    body["params"]["protocolVersion"] = "2099-01-01"
    status, reply, _ = await gw.post(body, key=key)
    assert status == 200 and reply["result"]["protocolVersion"] == LEGACY
    body["params"]["protocolVersion"] = "2025-06-18"
    status, reply, _ = await gw.post(body, key=key)
    assert reply["result"]["protocolVersion"] == "2025-06-18"


async def test_one_service_initialize_reports_that_service(mesh: Any) -> None:
    await mesh.dxp()
    gw = await mesh.gateway()
    await mesh.wait_discovered("dxp")
    _org, key = await mesh.tenant(scopes=["dxp:read"])
    status, body, _ = await gw.post(init_body(), key=key, path="/mcp/dxp")
    assert status == 200, body
    assert body["result"]["serverInfo"]["name"] == "mcpmesh-dxp"
    assert body["result"]["instructions"] == "test service"
    assert "tools" in body["result"]["capabilities"]


async def test_get_stream_sends_keepalives_and_closes_when_the_session_ends(mesh: Any) -> None:
    gw = await mesh.gateway(sse_ping_s=0.1)
    _org, key = await mesh.tenant()
    session = await open_session(gw, key)
    headers = {"x-api-key": key, "accept": "text/event-stream", **legacy_headers(session)}
    resp = await gw.client.get("/mcp", headers=headers)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
    ping = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
    assert first.startswith(b":") and ping == b": ping\n\n"
    deleted = await gw.client.delete("/mcp", headers={"x-api-key": key, **legacy_headers(session)})
    assert deleted.status == 200
    rest = await asyncio.wait_for(resp.content.read(), 5)  # the server closes the stream
    assert b"data:" not in rest
    # A GET for an ended session is refused; so is one that does not accept an event stream.
    again = await gw.client.get("/mcp", headers=headers)
    assert again.status == 404
    wrong_accept = await gw.client.get("/mcp", headers={**headers, "accept": "application/json"})
    assert wrong_accept.status == 406


async def test_results_for_legacy_clients_are_shaped_for_their_version(mesh: Any) -> None:
    await mesh.dxp()
    gw = await mesh.gateway()
    await mesh.wait_discovered("dxp")
    _org, key = await mesh.tenant(scopes=["dxp:read"])
    session = await open_session(gw, key)
    status, body, _ = await gw.post(
        {"jsonrpc": "2.0", "id": "a", "method": "tools/list"}, key=key, headers=legacy_headers(session)
    )
    assert status == 200 and body["id"] == "a"
    assert {"resultType", "ttlMs", "cacheScope"}.isdisjoint(body["result"])
    assert {t["name"] for t in body["result"]["tools"]} == {
        "dxp_hello",
        "dxp_slow",
        "dxp_refuse",
        "dxp_regional",
    }
