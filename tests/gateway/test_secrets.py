"""Tenant secrets end to end: a kit service with `secrets=True` behind the gateway, set, listed
and deleted by tool and by the admin API, scoped to one org, never shown anywhere."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
import pytest
from mcp.server.mcpserver import Context

from mcpmesh.secrets import new_master_key_entry
from mcpmesh.service import MeshService, ServiceSettings, call_of
from mcpmesh.store import connect_database

from .conftest import ADMIN_KEY, Gateway, Mesh

PLAINTEXT = "sk-e2e-plaintext-7f3a9c1d5e-NEVER-SHOWN"
OTHER = "dxp-client-secret-0a1b2c3d4e5f-ALSO-HIDDEN"


def secret_service() -> MeshService:
    """`dxp` (a known service, so tenant keys can name it) keeping tenant secrets."""
    svc = MeshService("dxp", secrets=True)

    @svc.tool(access="read")
    async def upstream(name: str, ctx: Context) -> dict[str, Any]:
        """Use a secret as an upstream call would: answer only whether it is there and its length."""
        value = await call_of(ctx).secrets.reveal(name)
        return {"found": value is not None, "length": len(value.reveal()) if value else 0}

    return svc


class Seen:
    """Every response body of the scenario, for the final grep."""

    def __init__(self, mesh: Mesh, gw: Gateway) -> None:
        self.mesh, self.gw = mesh, gw
        self.bodies: list[bytes] = []

    async def tool(self, key: str, name: str, arguments: dict[str, Any] | None = None) -> tuple[int, Any]:
        status, body, _ = await self.gw.rpc(
            "tools/call", {"name": name, "arguments": arguments or {}}, key=key
        )
        self.bodies.append(msgspec.json.encode(body))
        return status, body

    async def rpc(self, method: str, key: str) -> Any:
        status, body, _ = await self.gw.rpc(method, {}, key=key)
        self.bodies.append(msgspec.json.encode(body))
        assert status == 200, body
        return body

    async def admin(
        self, method: str, path: str, body: Any = None, *, expect: int, bearer: str = ADMIN_KEY
    ) -> Any:
        resp = await self.gw.client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {bearer}"}
        )
        raw = await resp.read()
        self.bodies.append(raw)
        assert resp.status == expect, (resp.status, raw)
        return msgspec.json.decode(raw)


def structured(body: Any) -> Any:
    assert "result" in body and not body["result"].get("isError"), body
    return body["result"]["structuredContent"]


async def all_documents(mongo_url: str, prefix: str) -> bytes:
    """Every document of every database of this test (gateway and service), as one blob."""
    client = connect_database(mongo_url, prefix).client
    blob = []
    try:
        for db_name in await client.list_database_names():
            if not db_name.startswith(prefix):
                continue
            db = client[db_name]
            for name in await db.list_collection_names():
                async for doc in db[name].find({}):
                    blob.append(repr(doc).encode())
    finally:
        client.close()
    return b"\n".join(blob)


async def test_secrets_by_tool_and_admin_api_never_leak(
    mesh: Mesh, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = ServiceSettings(
        mongodb_url=mesh.mongo_url,
        mongodb_database=f"{mesh.database}_dxp",
        secrets_keys=new_master_key_entry("k1"),
    )
    harness = await mesh.service(secret_service(), settings)
    gw = await mesh.gateway()
    await mesh.wait_discovered("dxp")
    seen = Seen(mesh, gw)
    org_a, admin_key = await mesh.tenant(scopes=["dxp:*"])
    plain = await seen.admin(
        "POST", f"/admin/orgs/{org_a}/keys", {"name": "p", "scopes": ["dxp:read", "dxp:write"]}, expect=201
    )
    org_b, b_key = await mesh.tenant(scopes=["*"], name="Globex")
    base_a = f"/admin/orgs/{org_a}/services/dxp/secrets"

    # By tool, with a key holding dxp:admin (through dxp:*).
    status, body = await seen.tool(admin_key, "dxp_secret_set", {"name": "openai", "value": PLAINTEXT})
    info = structured(body)
    assert status == 200 and info["name"] == "openai" and info["last4"] == PLAINTEXT[-4:]
    listed = structured((await seen.tool(admin_key, "dxp_secrets"))[1])
    assert listed == {"secrets": [info]}
    used = structured((await seen.tool(plain["secret"], "dxp_upstream", {"name": "openai"}))[1])
    assert used == {"found": True, "length": len(PLAINTEXT)}

    # A key with read and write only: refused, and the secret tools are not even listed for it.
    for name, args in (("dxp_secret_set", {"name": "x", "value": OTHER}), ("dxp_secrets", {})):
        status, body = await seen.tool(plain["secret"], name, args)
        assert status == 403 and "missing scope 'dxp:admin'" in body["error"]["message"]
    names = {t["name"] for t in (await seen.rpc("tools/list", plain["secret"]))["result"]["tools"]}
    assert "dxp_upstream" in names and not names & {"dxp_secret_set", "dxp_secrets", "dxp_secret_delete"}
    names = {t["name"] for t in (await seen.rpc("tools/list", admin_key))["result"]["tools"]}
    assert {"dxp_secret_set", "dxp_secrets", "dxp_secret_delete"} <= names

    # Another org sees nothing and reaches nothing, by tool or admin API.
    assert structured((await seen.tool(b_key, "dxp_secrets"))[1]) == {"secrets": []}
    assert structured((await seen.tool(b_key, "dxp_upstream", {"name": "openai"}))[1])["found"] is False
    assert await seen.admin("GET", f"/admin/orgs/{org_b}/services/dxp/secrets", expect=200) == {"items": []}

    # By the admin API.
    put = await seen.admin("PUT", f"{base_a}/dxp-client", {"value": OTHER}, expect=200)
    assert put["name"] == "dxp-client" and put["last4"] == OTHER[-4:] and "value" not in put
    items = (await seen.admin("GET", base_a, expect=200))["items"]
    assert [i["name"] for i in items] == ["dxp-client", "openai"]
    assert structured((await seen.tool(plain["secret"], "dxp_upstream", {"name": "dxp-client"}))[1])[
        "length"
    ] == len(OTHER)
    refused = await seen.admin("PUT", f"{base_a}/Bad Name", {"value": OTHER}, expect=400)
    assert "secret name" in refused["error"]["message"]
    await seen.admin("PUT", f"{base_a}/x", {"value": 42}, expect=400)
    await seen.admin("PUT", f"{base_a}/x", {"value": OTHER, "extra": 1}, expect=400)
    await seen.admin("PUT", f"{base_a}/x", {"value": OTHER}, expect=401, bearer=admin_key)
    missing = await seen.admin(
        "PUT", f"/admin/orgs/{org_a}/services/rag/secrets/x", {"value": OTHER}, expect=404
    )
    assert missing["error"]["message"] == "no replica of service rag is running"
    await seen.admin(
        "PUT", "/admin/orgs/org-nope-000000/services/dxp/secrets/x", {"value": OTHER}, expect=404
    )
    deleted = await seen.admin("DELETE", f"{base_a}/dxp-client", expect=200)
    assert deleted == {"name": "dxp-client", "deleted": True}
    await seen.admin("DELETE", f"{base_a}/dxp-client", expect=404)
    status, body = await seen.tool(admin_key, "dxp_secret_delete", {"name": "openai"})
    assert structured(body) == {"name": "openai", "deleted": True}
    await seen.tool(admin_key, "dxp_secret_set", {"name": "openai", "value": PLAINTEXT})

    # The admin actions are audited: names and fingerprints, never the value.
    async def audited() -> list[dict[str, Any]]:
        while True:
            rows = (await seen.admin("GET", f"/admin/audit?org_id={org_a}&limit=1000", expect=200))["items"]
            if {"secret.set", "secret.delete", "tools/call dxp_secret_set"} <= {r["action"] for r in rows}:
                return rows
            await asyncio.sleep(0.1)

    rows = await asyncio.wait_for(audited(), 15)
    sets = [r for r in rows if r["action"] == "secret.set" and r["outcome"] == "ok"]
    assert [r["target"] for r in sets] == ["dxp/dxp-client"]
    assert sets[0]["detail"] == {"service": "dxp", "fingerprint": put["fingerprint"]}
    assert any(r["action"] == "tools/call dxp_secret_set" for r in rows)  # key uses, by tool

    # Export leaves the sealed secrets out; delete removes them.
    exported = await seen.admin("GET", f"/admin/orgs/{org_a}/export", expect=200)
    assert exported["services"]["dxp"]["ok"] and "secrets" not in exported["services"]["dxp"]["data"]
    assert "secrets" in await harness.service.store.tenant_collections(org_a)
    stored = await all_documents(mesh.mongo_url, mesh.database)
    dropped = await seen.admin("DELETE", f"/admin/orgs/{org_a}", expect=200)
    assert "secrets" in dropped["services"]["dxp"]["dropped"]
    assert "secrets" not in await harness.service.store.tenant_collections(org_a)

    # Nowhere: responses, log records, stdout/stderr, any stored document.
    captured = capsys.readouterr()
    logged = "\n".join(f"{r.getMessage()} {r.__dict__!r}" for r in caplog.records)
    assert len(seen.bodies) > 20 and len(caplog.records) > 10
    for text in (PLAINTEXT, OTHER):
        assert not [b for b in seen.bodies if text.encode() in b]
        assert text not in logged
        assert text not in captured.out and text not in captured.err
        assert text.encode() not in stored
