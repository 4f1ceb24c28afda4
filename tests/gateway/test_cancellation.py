"""Cancellation reaches the work, through the real gateway: a client's `notifications/cancelled`
(2025-11-25 session and 2026-07-28), a client that closes its connection mid-call (plain JSON
and SSE) and the official SDK client abandoning a call stop the tool's coroutine at the service
replica (it gets CancelledError), free its admission slot and count it as `cancelled`, also one
hop down; another org naming the same request stops nothing."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context
from mcp.shared._httpx_utils import create_mcp_http_client

from mcpmesh.proto.errors import JSONRPC_CODES, ErrorCode
from mcpmesh.service import MeshService, call_of
from mcpmesh.service.testing import ServiceHarness

from .conftest import Gateway, Mesh, legacy_headers, modern_body, modern_headers

pytestmark = pytest.mark.asyncio


@dataclass
class Probe:
    """What the slow tool saw: started, cancelled (CancelledError reached it), finished."""

    started: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    finished: list[str] = field(default_factory=list)


def slow_service(probe: Probe, name: str = "dxp") -> MeshService:
    svc = MeshService(name)

    @svc.tool(access="read", budget_s=60)
    async def wait(tag: str, ctx: Context, progress: bool = False) -> str:
        """Wait (long), recording whether it was cancelled."""
        probe.started.set()
        if progress:
            await ctx.report_progress(1, 2, "started")
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            probe.cancelled.set()
            raise
        probe.finished.append(tag)
        return "done"

    return svc


def relay_service() -> MeshService:
    """Calls `wait` one hop down (dxp may call logs: `stamp.DOWNSTREAM`)."""
    svc = MeshService("dxp")

    @svc.tool(access="read", budget_s=60)
    async def relay(ctx: Context) -> dict[str, Any]:
        return await call_of(ctx).call_tool("logs", "wait", {"tag": "downstream"})

    return svc


async def _setup(mesh: Mesh, *, hops: int = 1) -> tuple[Gateway, ServiceHarness, Probe]:
    """The slow tool on dxp (hops=1), or on logs behind dxp's relay (hops=2)."""
    probe = Probe()
    if hops == 2:
        await mesh.service(relay_service())
    harness = await mesh.service(slow_service(probe, "dxp" if hops == 1 else "logs"))
    gw = await mesh.gateway()
    # As `web.run_app` serves it: aiohttp's test server cancels the handler of a request whose
    # client went away, the production server does not (the gateway must notice by itself).
    runner = gw.client.server.runner
    assert runner is not None and runner.server is not None
    runner.server.handler_cancellation = False
    await mesh.wait_discovered("dxp", *(["logs"] if hops == 2 else []))
    return gw, harness, probe


def _call_body(rpc_id: Any, tag: str, progress: bool = False) -> dict[str, Any]:
    params: dict[str, Any] = {"name": "dxp_wait", "arguments": {"tag": tag, "progress": progress}}
    if progress:
        params["_meta"] = {"progressToken": "p1"}
    return {"jsonrpc": "2.0", "id": rpc_id, "method": "tools/call", "params": params}


async def _stopped_cleanly(harness: ServiceHarness, probe: Probe) -> None:
    await asyncio.wait_for(probe.cancelled.wait(), 10)
    assert probe.finished == []
    server = harness.server
    assert server is not None
    for _ in range(200):  # the slot is freed as the handler unwinds
        if server.gate.inflight == 0 and len(harness.service.running) == 0:
            break
        await asyncio.sleep(0.01)
    assert server.gate.inflight == 0
    assert len(harness.service.running) == 0


async def _notices_seen(harness: ServiceHarness, count: int) -> None:
    for _ in range(500):
        if harness.service.running.notices >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the replica saw {harness.service.running.notices} cancel notices, not {count}")


def _cancelled_count(harness: ServiceHarness) -> float:
    labels = {"service": harness.service.name, "tool": "wait", "status": "cancelled"}
    value = harness.service.metrics.registry.get_sample_value("mcpmesh_requests_total", labels)
    return value or 0.0


async def test_a_legacy_session_cancels_its_call(mesh: Mesh) -> None:
    gw, harness, probe = await _setup(mesh)
    _org, key = await mesh.tenant(scopes=["dxp:read"])
    session = await gw.legacy_session(key)
    call = asyncio.create_task(gw.post(_call_body(7, "legacy"), key=key, headers=legacy_headers(session)))
    await asyncio.wait_for(probe.started.wait(), 10)
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}}
    status, _, _ = await gw.post(cancel, key=key, headers=legacy_headers(session))
    assert status == 202
    await _stopped_cleanly(harness, probe)
    status, body, _ = await asyncio.wait_for(call, 10)
    assert status == 200  # in a session, JSON-RPC errors travel with 200
    assert body["id"] == 7
    assert body["error"]["code"] == JSONRPC_CODES[ErrorCode.CANCELLED]
    assert body["error"]["data"]["code"] == "cancelled"


async def test_a_modern_cancel_stops_only_its_own_orgs_call(mesh: Mesh) -> None:
    gw, harness, probe = await _setup(mesh)
    _org, key = await mesh.tenant(scopes=["dxp:read"], name="Acme")
    _other, other_key = await mesh.tenant(scopes=["dxp:read"], name="Other")
    params = {"name": "dxp_wait", "arguments": {"tag": "modern"}}
    call = asyncio.create_task(gw.rpc("tools/call", params, key=key, rpc_id="c-1"))
    await asyncio.wait_for(probe.started.wait(), 10)
    cancel = modern_body("notifications/cancelled", {"requestId": "c-1"})
    del cancel["id"]
    hdrs = modern_headers("notifications/cancelled")
    # Another org names the same request id, then the same key another id: nothing stops.
    wrong = {**cancel, "params": {**cancel["params"], "requestId": 1}}
    for notice, who in ((cancel, other_key), (wrong, key)):
        status, _, _ = await gw.post(notice, key=who, headers=hdrs)
        assert status == 202
    await _notices_seen(harness, 2)
    assert not probe.cancelled.is_set() and not call.done()
    status, _, _ = await gw.post(cancel, key=key, headers=hdrs)
    assert status == 202
    await _stopped_cleanly(harness, probe)
    _status, body, _ = await asyncio.wait_for(call, 10)
    assert body["id"] == "c-1"
    assert body["error"]["data"]["code"] == "cancelled"
    assert _cancelled_count(harness) == 1


async def _raw_post(gw: Gateway, body: dict[str, Any], headers: dict[str, str]) -> asyncio.StreamWriter:
    """POST over a socket of our own (so the test decides when the connection closes)."""
    host, port = gw.client.server.host, gw.client.server.port
    reader, writer = await asyncio.open_connection(host, port)
    data = msgspec.json.encode(body)
    head = [
        "POST /mcp HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(data)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
    await writer.drain()
    writer.transport.set_write_buffer_limits(0)
    writer._mcpmesh_reader = reader  # type: ignore[attr-defined]  # kept alive with the writer
    return writer


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "sse"])
async def test_a_client_gone_mid_call_cancels_it(mesh: Mesh, streamed: bool) -> None:
    gw, harness, probe = await _setup(mesh)
    _org, key = await mesh.tenant(scopes=["dxp:read"])
    session = await gw.legacy_session(key)
    headers = {
        "x-api-key": key,
        "accept": "application/json, text/event-stream",
        **legacy_headers(session),
    }
    writer = await _raw_post(gw, _call_body(3, "gone", progress=streamed), headers)
    await asyncio.wait_for(probe.started.wait(), 10)
    if streamed:  # the stream is open: the progress event arrived before the client leaves
        reader: asyncio.StreamReader = writer._mcpmesh_reader  # type: ignore[attr-defined]
        seen = await asyncio.wait_for(reader.readuntil(b"\n\n"), 10)
        assert b"text/event-stream" in seen.lower() and b"notifications/progress" in seen
    writer.close()
    await writer.wait_closed()
    await _stopped_cleanly(harness, probe)
    assert _cancelled_count(harness) == 1
    assert len(gw.state.disconnects) == 0


async def test_a_cancelled_call_cancels_what_it_waits_for_downstream(mesh: Mesh) -> None:
    gw, harness, probe = await _setup(mesh, hops=2)
    _org, key = await mesh.tenant(scopes=["dxp:read", "logs:read"])
    call = asyncio.create_task(gw.rpc("tools/call", {"name": "dxp_relay"}, key=key, rpc_id=5))
    await asyncio.wait_for(probe.started.wait(), 10)  # running on logs, one hop down
    cancel = modern_body("notifications/cancelled", {"requestId": 5})
    del cancel["id"]
    status, _, _ = await gw.post(cancel, key=key, headers=modern_headers("notifications/cancelled"))
    assert status == 202
    await _stopped_cleanly(harness, probe)  # the logs replica stopped it
    assert _cancelled_count(harness) == 1
    _status, body, _ = await asyncio.wait_for(call, 10)
    assert body["error"]["data"]["code"] == "cancelled"


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_the_sdk_client_cancelling_a_call_stops_it(mesh: Mesh, mode: str) -> None:
    """The official client abandons a call: in a session it posts `notifications/cancelled`,
    at 2026-07-28 it closes the POST's response. Either way the tool stops."""
    gw, harness, probe = await _setup(mesh)
    _org, key = await mesh.tenant(scopes=["dxp:read"])
    http = create_mcp_http_client(headers={"x-api-key": key})
    async with Client(streamable_http_client(gw.url, http_client=http), mode=mode) as client:
        call = asyncio.create_task(client.call_tool("dxp_wait", {"tag": "sdk"}))
        await asyncio.wait_for(probe.started.wait(), 10)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await _stopped_cleanly(harness, probe)
        assert (await client.list_tools()).tools  # the client carries on
    assert _cancelled_count(harness) == 1
