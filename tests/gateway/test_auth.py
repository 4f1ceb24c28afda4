"""Who may call: API keys in either header, 401s pointing at RFC 9728 metadata, revocation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest


async def test_missing_key_is_401_with_resource_metadata(dxp_mesh: Any) -> None:
    _mesh, gw = dxp_mesh
    status, body, headers = await gw.rpc("tools/list", key=None)
    assert status == 401
    assert body["error"]["code"] == -32001
    assert body["error"]["data"]["reason"] == "missing"
    challenge = headers["WWW-Authenticate"]
    metadata_url = gw.base("/.well-known/oauth-protected-resource")
    assert challenge == f'Bearer resource_metadata="{metadata_url}"'
    resp = await gw.client.get("/.well-known/oauth-protected-resource")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["resource"] == gw.url
    assert doc["bearer_methods_supported"] == ["header"]
    assert "dxp:read" in doc["scopes_supported"]
    path_specific = await gw.client.get("/.well-known/oauth-protected-resource/mcp")
    assert (await path_specific.json())["resource"] == gw.url


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"x-api-key": "not-a-key"}, "malformed"),
        ({"authorization": "Basic dXNlcjpwYXNz"}, "malformed"),
        ({"authorization": "Bearer mm_000000000000_" + "A" * 43}, "unknown"),
        ({"x-api-key": "org-acme"}, "malformed"),
    ],
)
async def test_bad_keys_are_401_with_the_reason(dxp_mesh: Any, headers: dict[str, str], reason: str) -> None:
    _mesh, gw = dxp_mesh
    status, body, resp_headers = await gw.rpc("tools/list", key=None, headers=headers)
    assert status == 401
    assert body["error"]["data"]["reason"] == reason
    assert 'error="invalid_token"' in resp_headers["WWW-Authenticate"]
    assert "A" * 43 not in str(body)  # the presented secret is never echoed


async def test_bearer_and_x_api_key_both_work(dxp_mesh: Any) -> None:
    mesh, gw = dxp_mesh
    _org, key = await mesh.tenant(scopes=["dxp:read"])
    assert (await gw.rpc("tools/list", key=key))[0] == 200
    assert (await gw.rpc("tools/list", key=None, headers={"authorization": f"Bearer {key}"}))[0] == 200


async def test_health_is_public_and_admin_key_is_not_a_tenant_key(dxp_mesh: Any) -> None:
    _mesh, gw = dxp_mesh
    resp = await gw.client.get("/health")
    assert resp.status == 200 and (await resp.json())["status"] == "ok"
    status, _body, _ = await gw.rpc("tools/list", key=gw.state.settings.admin_key)
    assert status == 401


async def test_revoked_key_is_refused_on_every_replica_within_a_second(mesh: Any) -> None:
    await mesh.dxp()
    a = await mesh.gateway()
    b = await mesh.gateway()
    await mesh.wait_discovered("dxp")
    _org, key = await mesh.tenant(scopes=["dxp:read"])
    key_id = "key-" + key.split("_")[1]
    for gw in (a, b):
        assert (await gw.rpc("tools/list", key=key))[0] == 200  # cached on both
    await mesh.admin("POST", f"/admin/keys/{key_id}/revoke", expect=200)
    await asyncio.sleep(1.0)
    for gw in (a, b):
        status, body, _ = await gw.rpc("tools/list", key=key)
        assert status == 401 and body["error"]["data"]["reason"] == "revoked"


async def test_auth_failures_are_counted_by_reason(dxp_mesh: Any) -> None:
    _mesh, gw = dxp_mesh
    await gw.rpc("tools/list", key=None)
    await gw.rpc("tools/list", key="nope")
    text = await (await gw.client.get("/metrics")).text()
    assert 'mcpmesh_auth_failures_total{reason="missing"} 1.0' in text
    assert 'mcpmesh_auth_failures_total{reason="malformed"} 1.0' in text
    assert 'mcpmesh_gateway_responses_total{code="401"} 2.0' in text
    assert 'mcpmesh_tenant_errors_total{org_id="-",service="gateway"} 2.0' in text
