"""Limits: 429 with Retry-After and a clear error, held across two gateway replicas."""

from __future__ import annotations

import asyncio
import time
from typing import Any


async def _fresh_minute(margin_s: float = 20.0) -> None:
    """Wait for a new UTC minute when too little of this one is left for the test."""
    into = time.time() % 60
    if into > 60 - margin_s:
        await asyncio.sleep(60 - into + 0.2)


async def test_over_the_minute_limit_is_429_naming_the_limit(dxp_mesh: Any) -> None:
    mesh, gw = dxp_mesh
    await _fresh_minute()
    org, key = await mesh.tenant(
        scopes=["dxp:read"], settings={"rate_limits": {"requests_per_minute": 5, "requests_per_day": 1000}}
    )
    statuses = [(await gw.rpc("ping", key=key))[0] for _ in range(5)]
    assert statuses == [200] * 5
    status, body, headers = await gw.rpc("ping", key=key)
    assert status == 429
    retry_after = int(headers["Retry-After"])
    assert 1 <= retry_after <= 60
    error = body["error"]
    assert error["code"] == -32029
    assert error["data"]["code"] == "rate_limited" and error["data"]["retryable"] is True
    assert error["data"]["limit"] == "key.requests_per_minute"
    assert error["message"].startswith("rate limit exceeded: this API key may make 5 requests per minute")
    assert "resets at" in error["message"]
    metrics = await (await gw.client.get("/metrics")).text()
    assert f'mcpmesh_rate_limited_total{{limit="key.requests_per_minute",org_id="{org}"}} 1.0' in metrics
    assert 'mcpmesh_gateway_responses_total{code="429"} 1.0' in metrics
    assert f'mcpmesh_tenant_requests_total{{org_id="{org}",service="gateway"}} 6.0' in metrics
    assert f'mcpmesh_tenant_errors_total{{org_id="{org}",service="gateway"}} 1.0' in metrics


async def test_the_org_limit_covers_all_of_its_keys(dxp_mesh: Any) -> None:
    mesh, gw = dxp_mesh
    await _fresh_minute()
    org, key = await mesh.tenant(
        scopes=["dxp:read"], settings={"rate_limits": {"requests_per_minute": 4, "requests_per_day": 1000}}
    )
    other = (await mesh.admin("POST", f"/admin/orgs/{org}/keys", {"name": "b", "scopes": ["*"]}, expect=201))[
        "secret"
    ]
    assert [(await gw.rpc("ping", key=k))[0] for k in (key, key, other, other)] == [200] * 4
    status, body, _ = await gw.rpc("ping", key=other)
    assert status == 429 and body["error"]["data"]["limit"] == "org.requests_per_minute"
    assert "this organization may make 4 requests per minute" in body["error"]["message"]


async def test_monthly_tool_call_quota(dxp_mesh: Any) -> None:
    mesh, gw = dxp_mesh
    _org, key = await mesh.tenant(scopes=["dxp:read"], settings={"monthly_tool_calls": 2})
    args = {"name": "dxp.hello", "arguments": {"text": "x"}}
    assert [(await gw.rpc("tools/call", args, key=key))[0] for _ in range(2)] == [200, 200]
    status, body, headers = await gw.rpc("tools/call", args, key=key)
    assert status == 429
    assert body["error"]["data"]["code"] == "limit_exceeded"
    assert body["error"]["data"]["limit"] == "org.monthly_tool_calls"
    assert "tool calls per month" in body["error"]["message"]
    assert int(headers["Retry-After"]) > 0
    # Listing is not a tool call: still allowed.
    assert (await gw.rpc("tools/list", key=key))[0] == 200


async def test_limits_hold_across_two_replicas_within_ten_percent(mesh: Any) -> None:
    await mesh.dxp()
    a = await mesh.gateway()
    b = await mesh.gateway()
    await mesh.wait_discovered("dxp")
    await _fresh_minute(margin_s=30)
    limit = 200
    _org, key = await mesh.tenant(
        scopes=["dxp:read"],
        settings={"rate_limits": {"requests_per_minute": limit, "requests_per_day": 100_000}},
    )
    replicas = [a, b]

    async def one(i: int) -> int:
        return (await replicas[i % 2].rpc("ping", key=key, rpc_id=i))[0]

    statuses: list[int] = []
    for start in range(0, 2 * limit, 40):  # 40 concurrent requests at a time, spread over both replicas
        statuses += await asyncio.gather(*(one(i) for i in range(start, start + 40)))
    admitted = statuses.count(200)
    assert statuses.count(200) + statuses.count(429) == len(statuses)
    print(f"\nadmitted {admitted} of {len(statuses)} with a limit of {limit}")
    assert limit * 0.9 <= admitted <= limit, admitted
    # And both replicas did admit some: the limit is shared, not per replica.
    assert a.state.limiter.kv_updates > 0 and b.state.limiter.kv_updates > 0
