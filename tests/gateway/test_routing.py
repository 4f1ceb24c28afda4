"""Routing onto the bus: filtering, scope and tier errors, deadlines, dead services, traces, ops."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from mcpmesh.telemetry.tracing import capture_spans


def call(name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "arguments": arguments or {}}


async def test_tools_list_is_filtered_by_scope_and_tier(dxp_mesh: Any) -> None:
    mesh, gw = dxp_mesh
    cases = [
        (["dxp:read"], "pro", {"dxp.hello", "dxp.slow", "dxp.refuse", "dxp.regional"}),
        (["dxp:write"], "pro", {"dxp.store"}),
        (["dxp:*"], "pro", {"dxp.hello", "dxp.slow", "dxp.refuse", "dxp.regional", "dxp.store"}),
        (
            ["dxp:*"],
            "enterprise",
            {"dxp.hello", "dxp.slow", "dxp.refuse", "dxp.regional", "dxp.store", "dxp.premium"},
        ),
        (["logs:read"], "pro", {"logs.tail"}),
        (["context:read"], "pro", set()),
    ]
    for scopes, tier, expected in cases:
        _org, key = await mesh.tenant(scopes=scopes, tier=tier)
        status, body, _ = await gw.rpc("tools/list", key=key)
        assert status == 200, body
        assert {t["name"] for t in body["result"]["tools"]} == expected, (scopes, tier)
        assert body["result"]["cacheScope"] == "private"
        assert body["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "mcpmesh"


async def test_calls_outside_scope_or_tier_name_what_is_missing(dxp_mesh: Any) -> None:
    mesh, gw = dxp_mesh
    _org, key = await mesh.tenant(scopes=["dxp:read"])
    status, body, _ = await gw.rpc("tools/call", call("dxp.store", {"value": "v"}), key=key)
    assert status == 403
    assert body["error"]["message"].startswith("missing scope 'dxp:write' for tool 'dxp.store'")
    assert body["error"]["data"]["required_scope"] == "dxp:write"
    status, body, _ = await gw.rpc("tools/call", call("dxp.premium"), key=key)
    assert status == 403 and "'pro' tier" in body["error"]["message"]
    status, body, _ = await gw.rpc("tools/call", call("logs.tail"), key=key)
    assert status == 403 and "logs:read" in body["error"]["message"]
    status, body, _ = await gw.rpc("tools/list", key=key, path="/mcp/logs")
    assert status == 403


async def test_the_service_sees_the_callers_org_and_key(dxp_mesh: Any) -> None:
    mesh, gw = dxp_mesh
    org_a, key_a = await mesh.tenant(scopes=["dxp:read"], name="A")
    org_b, key_b = await mesh.tenant(scopes=["dxp:read"], name="B")
    for org, key in ((org_a, key_a), (org_b, key_b)):
        status, body, _ = await gw.rpc("tools/call", call("dxp.hello", {"text": "x"}), key=key)
        assert status == 200
        assert body["result"]["structuredContent"]["org"] == org
        assert body["result"]["structuredContent"]["key"] == "key-" + key.split("_")[1]


async def test_a_slow_service_times_out_inside_the_deadline(mesh: Any) -> None:
    await mesh.dxp()
    gw = await mesh.gateway(call_timeout_s=0.5)
    await mesh.wait_discovered("dxp")
    _org, key = await mesh.tenant(scopes=["dxp:read"])
    started = time.monotonic()
    status, body, _ = await gw.rpc("tools/call", call("dxp.slow", {"seconds": 5}), key=key)
    elapsed = time.monotonic() - started
    assert status == 504
    assert body["error"]["data"]["code"] == "timeout"
    assert "did not answer within 0.5 s" in body["error"]["message"]
    assert elapsed < 2.0


async def test_a_dead_service_is_unavailable_not_a_hang(mesh: Any) -> None:
    harness = await mesh.dxp()
    gw = await mesh.gateway(call_timeout_s=1.0)
    await mesh.wait_discovered("dxp")
    _org, key = await mesh.tenant(scopes=["dxp:read"])
    assert (await gw.rpc("tools/call", call("dxp.hello", {"text": "x"}), key=key))[0] == 200
    assert harness.server is not None
    await harness.server.micro.stop()  # type: ignore[union-attr]  # the replica vanishes from the bus
    started = time.monotonic()
    status, body, _ = await gw.rpc("tools/call", call("dxp.hello", {"text": "x"}), key=key)
    assert status in (503, 504), body
    assert body["error"]["data"]["retryable"] is True
    assert time.monotonic() - started < 2.5


async def test_trace_continues_from_client_through_gateway_into_the_service(dxp_mesh: Any) -> None:
    mesh, gw = dxp_mesh
    org, key = await mesh.tenant(scopes=["dxp:read"])
    spans = capture_spans()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = f"00-{trace_id}-00f067aa0ba902b7-01"
    status, _, headers = await gw.rpc(
        "tools/call", call("dxp.hello", {"text": "x"}), key=key, headers={"traceparent": parent}
    )
    assert status == 200 and headers["X-Request-Id"]
    for _ in range(50):
        names = {s.name: s for s in spans.get_finished_spans()}
        if "dxp serve" in names and "gateway POST /mcp" in names:
            break
        await asyncio.sleep(0.02)
    gateway_span, service_span = names["gateway POST /mcp"], names["dxp serve"]
    assert f"{gateway_span.context.trace_id:032x}" == trace_id
    assert service_span.context.trace_id == gateway_span.context.trace_id
    assert service_span.parent is not None and service_span.parent.span_id == gateway_span.context.span_id
    assert gateway_span.attributes["mcpmesh.tool"] == "hello"
    assert gateway_span.attributes["mcpmesh.org_id"] == org  # the tenant on the spans of both hops
    assert service_span.attributes["mcpmesh.org_id"] == org


async def test_ops_endpoints(dxp_mesh: Any) -> None:
    mesh, gw = dxp_mesh
    org, key = await mesh.tenant(scopes=["dxp:read"])
    await gw.rpc("tools/call", call("dxp.hello", {"text": "x"}), key=key)
    ready = await gw.client.get("/ready")
    assert ready.status == 200
    assert (await ready.json())["services"] == ["dxp", "logs"]
    health = await (await gw.client.get("/health/services")).json()
    assert health["status"] == "ok"
    assert health["services"]["dxp"]["status"] == "up"
    assert health["services"]["dxp"]["replicas"] == 1
    assert health["services"]["dxp"]["versions"] == ["0.1.0"]
    assert health["services"]["dxp"]["instances"][0]["requests"] >= 1
    metrics = await (await gw.client.get("/metrics")).text()
    assert f'mcpmesh_tenant_requests_total{{org_id="{org}",service="dxp"}} 1.0' in metrics
    assert f'mcpmesh_tenant_request_seconds_count{{org_id="{org}",service="dxp"}} 1.0' in metrics
    assert 'service="dxp",status="ok",tool="hello"' in metrics
    assert 'mcpmesh_request_seconds_bucket{le="0.005",service="dxp",tool="hello"}' in metrics
    assert "mcpmesh_gateway_services_discovered 2.0" in metrics


async def test_ready_is_503_without_services(mesh: Any) -> None:
    gw = await mesh.gateway()
    resp = await gw.client.get("/ready")
    assert resp.status == 503
    body = await resp.json()
    assert body["checks"]["nats"] is True and body["checks"]["services"] is False


async def test_tool_deployed_after_caching_is_found(mesh: Any) -> None:
    from mcpmesh.service import MeshService

    first = MeshService("rag")

    @first.tool(access="read")
    async def search(q: str) -> str:
        return q

    harness = await mesh.service(first)
    gw = await mesh.gateway(catalog_ttl_s=3600)
    await mesh.wait_discovered("rag")
    _org, key = await mesh.tenant(scopes=["rag:read"])
    assert (await gw.rpc("tools/list", key=key))[1]["result"]["tools"][0]["name"] == "rag.search"

    @first.tool(access="read")
    async def ask(q: str) -> str:
        return "answer " + q

    status, body, _ = await gw.rpc("tools/call", call("rag.ask", {"q": "x"}), key=key)
    assert status == 200, body
    assert body["result"]["structuredContent"] == {"result": "answer x"}
    assert harness is not None


async def test_a_nats_outage_is_a_quick_503_and_the_gateway_recovers(mesh: Any) -> None:
    await mesh.dxp()
    gw = await mesh.gateway(call_timeout_s=1.0)
    await mesh.wait_discovered("dxp")
    _org, key = await mesh.tenant(scopes=["dxp:read"], settings={"rate_limits": {"requests_per_minute": 30}})
    args = call("dxp.hello", {"text": "x"})
    assert (await gw.rpc("tools/call", args, key=key))[0] == 200
    mesh.nats.stop()
    try:
        for _ in range(3):
            started = time.monotonic()
            status, body, _ = await gw.rpc("tools/call", args, key=key)
            assert status == 503, body
            assert body["error"]["data"]["retryable"] is True
            assert time.monotonic() - started < 3.0
        ready = await gw.client.get("/ready")
        assert ready.status == 503
    finally:
        mesh.nats.start()
    for _ in range(100):
        status, body, _ = await gw.rpc("tools/call", args, key=key)
        if status == 200:
            break
        await asyncio.sleep(0.1)
    assert status == 200, body


async def test_mcp_param_headers_are_checked_against_the_tool_schema(dxp_mesh: Any) -> None:
    mesh, gw = dxp_mesh
    _org, key = await mesh.tenant(scopes=["dxp:read"])
    args = call("dxp.regional", {"region": "eu-west"})
    status, body, _ = await gw.rpc("tools/call", args, key=key)
    assert status == 400 and "Mcp-Param-Region" in body["error"]["message"]
    status, body, _ = await gw.rpc("tools/call", args, key=key, headers={"Mcp-Param-Region": "us-east"})
    assert status == 400 and "does not match" in body["error"]["message"]
    status, body, _ = await gw.rpc("tools/call", args, key=key, headers={"Mcp-Param-Region": "eu-west"})
    assert status == 200 and body["result"]["structuredContent"] == {"result": "served in eu-west"}
