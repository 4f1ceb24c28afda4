"""Service-to-service calls through the real gateway: client → gateway → hopa → hopb → hopc.

What a service three hops down reports reaches the client as if the first service had said it:
a tool error or a protocol error with its code, retryability and details; a service that is not
running as `unavailable` (retryable); progress as the client's own request's progress events.
"""

from __future__ import annotations

from typing import Any

import pytest
from mcp.server.mcpserver import Context
from mcp_types import LOG_LEVEL_META_KEY

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.service import MeshService, call_of
from mcpmesh.tenancy import stamp as stamps
from tests.gateway.conftest import Gateway, Mesh
from tests.gateway.test_sdk_clients import MODERN, sdk_client
from tests.gateway.test_streaming import post_for_stream, sse_messages, with_streaming_tools

PROVIDER_DOWN = MeshException(
    ErrorCode.UNAVAILABLE, "the provider is down", retryable=True, details={"provider": "p1", "after_s": 2}
)
# A protocol error (raised by a resource), with an override of its code's default retryability.
OVER_QUOTA = MeshException(
    ErrorCode.RATE_LIMITED, "over the provider's daily quota", retryable=False, details={"quota": "daily"}
)


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> None:
    """hopa may call hopb and (with the same stamp) hopc, hopb may call hopc: set before the
    test's nats-server renders its users, so request this fixture before `mesh`."""
    monkeypatch.setitem(stamps.DOWNSTREAM, "hopa", ("hopb", "hopc"))
    monkeypatch.setitem(stamps.DOWNSTREAM, "hopb", ("hopc",))


def hop(name: str, callee: str) -> MeshService:
    svc = MeshService(name)

    @svc.tool(access="read")
    async def relay(tool: str, arguments: dict[str, Any], ctx: Context) -> dict[str, Any]:
        """Call the next service's tool; its structured result (progress relayed by default)."""
        result = await call_of(ctx).call_tool(callee, tool, arguments)
        return dict(result.get("structuredContent") or {})

    @svc.tool(access="read")
    async def retell(tool: str, arguments: dict[str, Any], ctx: Context) -> dict[str, Any]:
        """Call the next service's tool, reporting its progress as this tool's own words."""

        async def seen(progress: float, total: float | None, message: str | None) -> None:
            await ctx.report_progress(progress, total, f"{name} saw: {message}")

        result = await call_of(ctx).call_tool(callee, tool, arguments, on_progress=seen)
        return dict(result.get("structuredContent") or {})

    @svc.tool(access="read")
    async def read(uri: str, ctx: Context) -> dict[str, Any]:
        """Read a resource of the next service (a failure there is a JSON-RPC error)."""
        return await call_of(ctx).request(callee, "resources/read", {"uri": uri})

    return svc


def last_hop() -> MeshService:
    svc = with_streaming_tools(MeshService("hopc"))

    @svc.tool(access="read")
    async def fail() -> str:
        raise PROVIDER_DOWN

    @svc.resource("hopc://quota")
    async def quota() -> str:
        raise OVER_QUOTA

    return svc


async def chain(mesh: Mesh, *, with_last: bool = True) -> Gateway:
    await mesh.service(hop("hopa", "hopb"))
    await mesh.service(hop("hopb", "hopc"))
    if with_last:
        await mesh.service(last_hop())
    gw = await mesh.gateway()
    await mesh.wait_discovered("hopa", "hopb")
    return gw


def through_b(tool: str, arguments: dict[str, Any], *, b_tool: str = "relay") -> dict[str, Any]:
    """`hopa_relay`'s arguments: hopb's `b_tool` calling hopc's `tool`."""
    return {"tool": b_tool, "arguments": {"tool": tool, "arguments": arguments}}


async def call(gw: Gateway, key: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    status, body, _ = await gw.rpc("tools/call", {"name": name, "arguments": arguments}, key=key)
    assert status == 200, body
    result: dict[str, Any] = body["result"]
    return result


def error_of(exc: MeshException) -> dict[str, Any]:
    e = exc.error
    return {"code": e.code.value, "message": e.message, "retryable": e.retryable, "details": e.details}


async def test_a_tool_error_three_hops_down_reaches_the_client_whole(hops: None, mesh: Mesh) -> None:
    gw = await chain(mesh)
    _org, key = await mesh.tenant()
    result = await call(gw, key, "hopa_relay", through_b("fail", {}))
    assert result["isError"] is True
    assert result["structuredContent"] == error_of(PROVIDER_DOWN)
    assert result["content"][0]["text"] == "unavailable: the provider is down"


async def test_a_protocol_error_three_hops_down_keeps_its_code_retryability_and_details(
    hops: None, mesh: Mesh
) -> None:
    gw = await chain(mesh)
    _org, key = await mesh.tenant()
    # hopc answers hopb's resources/read with a JSON-RPC error; hopb's tool fails with it.
    result = await call(gw, key, "hopa_relay", {"tool": "read", "arguments": {"uri": "hopc://quota"}})
    assert result["isError"] is True
    assert result["structuredContent"] == error_of(OVER_QUOTA)


async def test_a_service_that_is_not_running_is_unavailable_not_a_bad_request(hops: None, mesh: Mesh) -> None:
    gw = await chain(mesh, with_last=False)
    _org, key = await mesh.tenant()
    result = await call(gw, key, "hopa_relay", through_b("fail", {}))
    assert result["isError"] is True
    assert result["structuredContent"] == {
        "code": "unavailable",
        "message": "service 'hopc' is unavailable (no replica took the request): retry later",
        "retryable": True,
        "details": {"service": "hopc"},
    }


@pytest.mark.parametrize("mode", [MODERN, "legacy"])
async def test_progress_two_hops_down_reaches_the_sdk_clients_callback(
    hops: None, mesh: Mesh, mode: str
) -> None:
    gw = await chain(mesh)
    _org, key = await mesh.tenant()
    relayed: list[tuple[float, float | None, str | None]] = []
    retold: list[tuple[float, float | None, str | None]] = []

    async def on_relayed(progress: float, total: float | None, message: str | None) -> None:
        relayed.append((progress, total, message))

    async def on_retold(progress: float, total: float | None, message: str | None) -> None:
        retold.append((progress, total, message))

    async with sdk_client(gw.url, key, mode) as client:
        # By default each hop relays its callee's progress as its own request's.
        result = await client.call_tool(
            "hopa_relay", through_b("count", {"steps": 20}), progress_callback=on_relayed
        )
        assert result.is_error is False and result.structured_content == {"result": "counted 20"}
        # hopb hands hopc's progress to its own function, which reports it in its own words.
        result = await client.call_tool(
            "hopa_relay", through_b("count", {"steps": 5}, b_tool="retell"), progress_callback=on_retold
        )
        assert result.is_error is False
        # Without a progress callback the client asks for no stream: a plain answer.
        result = await client.call_tool("hopa_relay", through_b("count", {"steps": 3}))
        assert result.structured_content == {"result": "counted 3"}
    assert relayed == [(float(i), 20.0, f"step {i}") for i in range(1, 21)]
    assert retold == [(float(i), 5.0, f"hopb saw: step {i}") for i in range(1, 6)]


# Log notifications are deprecated at 2026-07-28 (SEP-2577) but still sent when a request opts in.
@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")
async def test_partial_output_two_hops_down_streams_to_a_client_that_opted_in(hops: None, mesh: Mesh) -> None:
    gw = await chain(mesh)
    _org, key = await mesh.tenant()
    meta = {"progressToken": "tok", LOG_LEVEL_META_KEY: "info"}
    params = {"name": "hopa_relay", "arguments": through_b("narrate", {"lines": 3}), "_meta": meta}
    resp = await post_for_stream(gw, key, params)
    assert resp.headers["content-type"].startswith("text/event-stream")
    messages = sse_messages(await resp.read())
    assert [m.get("method") for m in messages] == ["notifications/message"] * 3 + [None]
    assert [m["params"]["data"] for m in messages[:3]] == ["partial 0", "partial 1", "partial 2"]
    assert messages[-1]["result"]["structuredContent"] == {"result": "told"}
