"""The sandbox verifies epi-hmac for real: a signed request passes; a wrong secret, a stale
timestamp, a reused nonce, another project's key or no header are refused."""

from __future__ import annotations

import base64
import secrets
import time
import uuid

import httpx

from mcpmesh.dev.dxpsandbox import Sandbox
from mcpmesh.dxp import signing


def _header(
    key: str, secret: str, method: str, path: str, *, ts: int | None = None, nonce: str | None = None
) -> str:
    ts = ts if ts is not None else int(time.time() * 1000)
    nonce = nonce or uuid.uuid4().hex
    sig = signing.signature(key, signing.decode_secret(secret), method, path, str(ts), nonce, b"")
    return f"epi-hmac {key}:{ts}:{nonce}:{sig}"


async def test_signatures_are_verified(sandbox: Sandbox) -> None:
    project = sandbox.add_project()
    other = sandbox.add_project()
    path = f"/api/v1.0/projects/{project.project_id}/deployments"
    url = f"http://127.0.0.1:{sandbox.port}{path}"
    wrong = base64.b64encode(secrets.token_bytes(32)).decode()
    async with httpx.AsyncClient() as http:

        async def get(header: str | None) -> httpx.Response:
            return await http.get(url, headers={"Authorization": header} if header else {})

        ok = await get(signing.authorization(project.client_key, project.client_secret, "GET", path))
        assert ok.status_code == 200 and ok.json() == {"success": True, "errors": None, "result": []}
        assert (await get(_header(project.client_key, wrong, "GET", path))).json()["errors"] == [
            "invalid signature"
        ]
        stale = _header(
            project.client_key, project.client_secret, "GET", path, ts=int((time.time() - 3600) * 1000)
        )
        assert (await get(stale)).json()["errors"] == ["stale timestamp"]
        nonce = uuid.uuid4().hex
        assert (
            await get(_header(project.client_key, project.client_secret, "GET", path, nonce=nonce))
        ).status_code == 200
        again = await get(_header(project.client_key, project.client_secret, "GET", path, nonce=nonce))
        assert again.status_code == 401 and again.json()["errors"] == ["nonce already used"]
        foreign = await get(signing.authorization(other.client_key, other.client_secret, "GET", path))
        assert foreign.status_code == 403
        assert (await get(None)).status_code == 401
        tampered = signing.authorization(project.client_key, project.client_secret, "GET", path + "?x=1")
        assert (await get(tampered)).json()["errors"] == ["invalid signature"]
