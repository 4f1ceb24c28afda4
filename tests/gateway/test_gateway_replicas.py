"""Two gateway replicas as separate processes on the same store and NATS (as in production):
what one creates or revokes, the other knows."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .conftest import ADMIN_KEY, Mesh, modern_body, modern_headers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GatewayProcess:
    """`python -m mcpmesh.gateway` with the environment the dev runner gives it."""

    def __init__(self, mesh: Mesh, log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(
            os.environ,
            GATEWAY_PORT=str(self.port),
            NATS_URL=mesh.nats_url,
            MONGODB_URL=mesh.mongo_url,
            MONGODB_DATABASE=mesh.database,
            MCPMESH_ADMIN_KEY=ADMIN_KEY,
            MCPMESH_STAMP_SIGNING_KEY=mesh.signing_pem,
            MCPMESH_ENV="dev",
            MCPMESH_DISCOVERY_INTERVAL_S="0.5",
        )
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mcpmesh.gateway"], env=env, stdout=out, stderr=subprocess.STDOUT
            )

    async def ready(self, http: aiohttp.ClientSession) -> None:
        """Until /ready (NATS up, the dxp service discovered)."""
        for _ in range(600):
            assert self.proc.poll() is None, "the gateway exited"
            try:
                async with http.get(f"{self.base}/ready") as resp:
                    if resp.status == 200 and "dxp" in (await resp.json())["services"]:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError("the gateway never became ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
async def replicas(mesh: Mesh, tmp_path: Path) -> AsyncIterator[tuple[GatewayProcess, GatewayProcess, Any]]:
    await mesh.dxp()
    gateways = [GatewayProcess(mesh, tmp_path / f"gateway-{i}.log") for i in range(2)]
    async with aiohttp.ClientSession() as http:
        try:
            for gw in gateways:
                await gw.ready(http)
            yield gateways[0], gateways[1], http
        finally:
            for gw in gateways:
                gw.stop()


async def admin(http: aiohttp.ClientSession, gw: GatewayProcess, path: str, body: Any = None) -> Any:
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    async with http.post(f"{gw.base}{path}", json=body, headers=headers) as resp:
        assert resp.status in (200, 201), await resp.text()
        return await resp.json()


async def hello(http: aiohttp.ClientSession, gw: GatewayProcess, key: str) -> tuple[int, Any]:
    params = {"name": "dxp.hello", "arguments": {"text": "x"}}
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "x-api-key": key,
        **modern_headers("tools/call", params),
    }
    body = modern_body("tools/call", params)
    async with http.post(f"{gw.base}/mcp", json=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_a_key_made_on_one_replica_works_on_the_other_and_revoking_it_reaches_both(
    replicas: tuple[GatewayProcess, GatewayProcess, Any],
) -> None:
    one, other, http = replicas
    org = await admin(http, one, "/admin/orgs", {"name": "Acme", "tier": "pro"})
    key = await admin(http, one, f"/admin/orgs/{org['id']}/keys", {"name": "k", "scopes": ["dxp:read"]})
    status, body = await hello(http, other, key["secret"])
    assert status == 200, body  # at once: the other replica reads the same store
    assert body["result"]["structuredContent"]["org"] == org["id"]
    assert (await hello(http, one, key["secret"]))[0] == 200

    await admin(http, one, f"/admin/keys/{key['id']}/revoke")
    revoked_at = time.monotonic()
    while True:
        status, body = await hello(http, other, key["secret"])
        if status == 401 or time.monotonic() - revoked_at > 1.0:
            break
        await asyncio.sleep(0.05)
    assert status == 401 and body["error"]["data"]["reason"] == "revoked", (status, body)
    assert (await hello(http, one, key["secret"]))[0] == 401
