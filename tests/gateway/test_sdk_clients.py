"""The official `mcp` SDK client through the gateway, end to end over NATS, in both revisions."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

LEGACY = "2025-11-25"
MODERN = "2026-07-28"


def sdk_client(url: str, key: str, mode: str, http: httpx2.AsyncClient | None = None) -> Client:
    http = http or create_mcp_http_client(headers={"x-api-key": key})
    return Client(streamable_http_client(url, http_client=http), mode=mode)


@pytest.mark.parametrize("mode", ["auto", MODERN, "legacy"])
async def test_sdk_lists_and_calls_tools_on_the_aggregate_endpoint(dxp_mesh: Any, mode: str) -> None:
    mesh, gw = dxp_mesh
    org, key = await mesh.tenant(scopes=["dxp:read", "logs:read"])
    async with sdk_client(gw.url, key, mode) as client:
        expected = LEGACY if mode == "legacy" else MODERN
        assert client.session.protocol_version == expected
        names = {t.name for t in (await client.list_tools()).tools}
        # dxp.store needs dxp:write and dxp.premium the enterprise tier: both filtered out.
        assert names == {"dxp_hello", "dxp_slow", "dxp_refuse", "dxp_regional", "logs_tail"}
        result = await client.call_tool("dxp_hello", {"text": "bob"})
        assert result.is_error is False
        assert result.structured_content == {
            "text": "hi bob",
            "org": org,
            "key": result.structured_content["key"],
        }
        tail = await client.call_tool("logs_tail", {"lines": 2})
        assert tail.structured_content == {"result": ["line 0", "line 1"]}
        refused = await client.call_tool("dxp_refuse", {})
        assert refused.is_error is True


@pytest.mark.parametrize("mode", [MODERN, "legacy"])
async def test_sdk_on_one_service_endpoint_uses_plain_names(dxp_mesh: Any, mode: str) -> None:
    mesh, gw = dxp_mesh
    _org, key = await mesh.tenant(scopes=["*"], tier="enterprise")
    async with sdk_client(gw.base("/mcp/dxp"), key, mode) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == {"hello", "store", "slow", "premium", "refuse", "regional"}
        assert (await client.call_tool("store", {"value": "v"})).structured_content == {"result": "stored v"}
        assert (await client.call_tool("premium", {})).structured_content == {"result": "premium"}
        resources = await client.list_resources()
        assert [str(r.uri) for r in resources.resources] == ["dxp://greeting"]
        read = await client.read_resource("dxp://greeting")
        assert read.contents[0].text == "hello from dxp"  # type: ignore[union-attr]
        prompt = await client.get_prompt("greet", {"name": "Ann"})
        assert "Ann" in prompt.messages[0].content.text  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", [MODERN, "legacy"])
async def test_sdk_resources_and_prompts_on_the_aggregate(dxp_mesh: Any, mode: str) -> None:
    mesh, gw = dxp_mesh
    _org, key = await mesh.tenant(scopes=["*"])
    async with sdk_client(gw.url, key, mode) as client:
        resources = await client.list_resources()
        assert [str(r.uri) for r in resources.resources] == ["dxp://greeting"]
        read = await client.read_resource("dxp://greeting")
        assert read.contents[0].text == "hello from dxp"  # type: ignore[union-attr]
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert prompts == {"dxp_greet", "logs_summarize"}
        prompt = await client.get_prompt("dxp_greet", {"name": "Ann"})
        assert "Ann" in prompt.messages[0].content.text  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", [MODERN, "legacy"])
async def test_sdk_sees_a_missing_scope_as_a_clear_error(dxp_mesh: Any, mode: str) -> None:
    mesh, gw = dxp_mesh
    _org, key = await mesh.tenant(scopes=["dxp:read"])
    async with sdk_client(gw.url, key, mode) as client:
        with pytest.raises(MCPError) as info:
            await client.call_tool("dxp_store", {"value": "v"})
        assert "missing scope 'dxp:write'" in info.value.error.message
        with pytest.raises(MCPError) as info:
            await client.call_tool("dxp_nope", {})
        assert "unknown tool 'dxp_nope'" in info.value.error.message


class RoundRobin(httpx2.AsyncBaseTransport):
    """Sends each HTTP request to the next gateway replica: no stickiness at all."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.inner = httpx2.AsyncHTTPTransport()
        self.sent: list[int] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        port = self.ports[len(self.sent) % len(self.ports)]
        self.sent.append(port)
        request.url = request.url.copy_with(port=port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_sdk_legacy_session_hops_between_replicas(mesh: Any) -> None:
    await mesh.dxp()
    a = await mesh.gateway()
    b = await mesh.gateway()
    await mesh.wait_discovered("dxp")
    _org, key = await mesh.tenant(scopes=["dxp:read"])
    ports = [a.client.port, b.client.port]
    transport = RoundRobin(ports)
    http = httpx2.AsyncClient(transport=transport, headers={"x-api-key": key}, timeout=30)
    async with sdk_client(a.url, key, "legacy", http) as client:
        for i in range(4):
            result = await client.call_tool("dxp_hello", {"text": str(i)})
            assert result.structured_content is not None and result.structured_content["text"] == f"hi {i}"
    assert set(transport.sent) == set(ports)


async def test_sdk_mirrors_param_headers_through_the_aggregate(dxp_mesh: Any) -> None:
    mesh, gw = dxp_mesh
    _org, key = await mesh.tenant(scopes=["dxp:read"])
    async with sdk_client(gw.url, key, MODERN) as client:
        await client.list_tools()  # the SDK learns the x-mcp-header declarations from the listing
        result = await client.call_tool("dxp_regional", {"region": "eu-west"})
        assert result.structured_content == {"result": "served in eu-west"}
