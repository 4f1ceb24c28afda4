"""Progress and large results, end to end: a service streams progress notifications over the
bus as frames of one reply; the gateway relays them as SSE events on the POST response (when the
client accepts an event stream and sent a progressToken), and reassembles results larger than
one NATS message."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
import pytest
from aiohttp import ClientResponse
from mcp.server.mcpserver import Context
from mcp_types import LOG_LEVEL_META_KEY

from mcpmesh.service import MeshService, ServiceSettings
from tests.gateway.conftest import Gateway, Mesh, modern_body, modern_headers
from tests.gateway.test_sdk_clients import LEGACY, MODERN, sdk_client

MIB = 1024 * 1024
UPDATES = 50


def streamer_service() -> MeshService:
    svc = with_streaming_tools(MeshService("streamer"))

    @svc.tool(access="read")
    async def blob(mib: float) -> str:
        """A result of about `mib` MiB."""
        return "x" * int(mib * MIB)

    return svc


def with_streaming_tools(svc: MeshService) -> MeshService:
    """`svc` with `count` (progress) and `narrate` (log lines: partial output)."""

    @svc.tool(access="read")
    async def count(steps: int, ctx: Context) -> str:
        """Report progress `steps` times, then answer."""
        for i in range(1, steps + 1):
            await ctx.report_progress(i, steps, f"step {i}")
        return f"counted {steps}"

    @svc.tool(access="read")
    async def narrate(lines: int, ctx: Context) -> str:
        """Partial output: a log line per step (for requests that opted in to log lines)."""
        for i in range(lines):
            await ctx.info(f"partial {i}")
        return "told"

    return svc


async def streamer_mesh(mesh: Mesh, **service_settings: Any) -> Any:
    settings = dataclasses.replace(ServiceSettings.from_env(), **service_settings)
    await mesh.service(streamer_service(), settings)
    gw = await mesh.gateway()
    await mesh.wait_discovered("streamer")
    return gw


def sse_messages(raw: bytes) -> list[dict[str, Any]]:
    """The JSON-RPC messages of an SSE body, in order."""
    out = []
    for event in raw.decode().split("\n\n"):
        data = [line[len("data: ") :] for line in event.split("\n") if line.startswith("data: ")]
        if data:
            out.append(msgspec.json.decode("\n".join(data)))
    return out


async def post_for_stream(gw: Gateway, key: str, params: dict[str, Any], rpc_id: int = 1) -> ClientResponse:
    """A 2026-07-28 tools/call accepting an event stream (its `params._meta` says what it asks for)."""
    return await gw.client.post(
        "/mcp",
        data=msgspec.json.encode(modern_body("tools/call", params, rpc_id=rpc_id)),
        headers={
            "x-api-key": key,
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            **modern_headers("tools/call", params),
        },
    )


@pytest.mark.parametrize("mode", [MODERN, "legacy"])
async def test_sdk_client_receives_50_progress_updates_in_order_then_the_result(
    mesh: Mesh, mode: str
) -> None:
    gw = await streamer_mesh(mesh)
    _org, key = await mesh.tenant(scopes=["*"])
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with sdk_client(gw.url, key, mode) as client:
        assert client.session.protocol_version == (LEGACY if mode == "legacy" else MODERN)
        result = await client.call_tool("streamer_count", {"steps": UPDATES}, progress_callback=on_progress)
    assert result.is_error is False
    assert result.structured_content == {"result": f"counted {UPDATES}"}
    assert seen == [(float(i), float(UPDATES), f"step {i}") for i in range(1, UPDATES + 1)]


async def test_the_stream_is_sse_events_then_the_response(mesh: Mesh) -> None:
    gw = await streamer_mesh(mesh)
    _org, key = await mesh.tenant(scopes=["*"])
    params = {"name": "streamer_count", "arguments": {"steps": 3}, "_meta": {"progressToken": "tok"}}
    resp = await post_for_stream(gw, key, params, rpc_id=7)
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.headers.get("x-request-id")
    messages = sse_messages(await resp.read())
    assert [m.get("method") for m in messages] == ["notifications/progress"] * 3 + [None]
    assert [m["params"]["progress"] for m in messages[:3]] == [1, 2, 3]
    assert all(m["params"]["progressToken"] == "tok" for m in messages[:3])
    assert messages[-1]["id"] == 7
    assert messages[-1]["result"]["structuredContent"] == {"result": "counted 3"}


# Log notifications are deprecated at 2026-07-28 (SEP-2577) but still sent when a request opts in.
@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")
async def test_partial_output_log_lines_stream_with_the_progress(mesh: Mesh) -> None:
    gw = await streamer_mesh(mesh)
    _org, key = await mesh.tenant(scopes=["*"])
    meta = {"progressToken": 1, LOG_LEVEL_META_KEY: "info"}
    params = {"name": "streamer_narrate", "arguments": {"lines": 3}, "_meta": meta}
    resp = await post_for_stream(gw, key, params)
    assert resp.headers["content-type"].startswith("text/event-stream")
    messages = sse_messages(await resp.read())
    assert [m.get("method") for m in messages] == ["notifications/message"] * 3 + [None]
    assert [m["params"]["data"] for m in messages[:3]] == ["partial 0", "partial 1", "partial 2"]
    assert messages[-1]["result"]["structuredContent"] == {"result": "told"}


@pytest.mark.parametrize(
    ("accept", "meta"),
    [
        ("application/json", {"progressToken": "tok"}),  # no event stream accepted
        ("application/json, text/event-stream", {}),  # no progress asked for
    ],
)
async def test_a_client_that_did_not_ask_for_a_stream_gets_plain_json(
    mesh: Mesh, accept: str, meta: dict[str, Any]
) -> None:
    gw = await streamer_mesh(mesh)
    _org, key = await mesh.tenant(scopes=["*"])
    params = {"name": "streamer_count", "arguments": {"steps": 5}, "_meta": meta}
    status, body, headers = await gw.rpc("tools/call", params, key=key, headers={"accept": accept})
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    assert body["result"]["structuredContent"] == {"result": "counted 5"}


@pytest.mark.parametrize("mode", [MODERN, "legacy"])
async def test_a_3_mib_result_arrives_whole(mesh: Mesh, mode: str) -> None:
    gw = await streamer_mesh(mesh)
    _org, key = await mesh.tenant(scopes=["*"])
    async with sdk_client(gw.url, key, mode) as client:
        result = await client.call_tool("streamer_blob", {"mib": 3})
    assert result.is_error is False
    assert result.structured_content == {"result": "x" * 3 * MIB}


async def test_a_result_past_the_services_limit_is_a_clear_error(mesh: Mesh) -> None:
    gw = await streamer_mesh(mesh, max_result_bytes=2 * MIB)
    _org, key = await mesh.tenant(scopes=["*"])
    _status, body, _headers = await gw.rpc(
        "tools/call", {"name": "streamer_blob", "arguments": {"mib": 3}}, key=key
    )
    error = body["error"]
    assert error["data"]["code"] == "limit_exceeded"
    assert f"over the {2 * MIB}-byte limit on a result (MCPMESH_MAX_RESULT_BYTES)" in error["message"]
    assert error["data"]["retryable"] is False
    # A result within the limit still arrives, in parts (the SDK sends a str result twice:
    # as structured content and as text, so 0.8 MiB is 1.6 MiB on the wire).
    status, body, _headers = await gw.rpc(
        "tools/call", {"name": "streamer_blob", "arguments": {"mib": 0.8}}, key=key
    )
    assert status == 200 and len(body["result"]["structuredContent"]["result"]) == int(0.8 * MIB)


async def test_a_result_past_the_gateways_limit_is_a_clear_error(mesh: Mesh) -> None:
    await mesh.service(streamer_service())
    gw = await mesh.gateway(max_result_bytes=2 * MIB)
    await mesh.wait_discovered("streamer")
    _org, key = await mesh.tenant(scopes=["*"])
    _status, body, _headers = await gw.rpc(
        "tools/call", {"name": "streamer_blob", "arguments": {"mib": 3}}, key=key
    )
    assert body["error"]["data"]["code"] == "limit_exceeded"
    assert f"over the {2 * MIB}-byte limit on a result" in body["error"]["message"]
