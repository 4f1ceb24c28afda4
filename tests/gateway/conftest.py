"""End-to-end gateway fixtures: a nats-server of the test's own, test services on the kit,
gateway replicas (the real app with the real control plane) and admin helpers.

    async def test_x(mesh):
        gw = await mesh.gateway()
        org, key = await mesh.tenant(scopes=["dxp:read"])
        status, body, headers = await gw.rpc("tools/list", key=key)
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import uuid
import warnings
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Annotated, Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from mcp.server.mcpserver import Context
from mcp_types import CLIENT_CAPABILITIES_META_KEY, CLIENT_INFO_META_KEY, PROTOCOL_VERSION_META_KEY
from multidict import CIMultiDict
from pydantic import Field

from mcpmesh.context import ContextSettings, build_service
from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.gateway.app import build_app
from mcpmesh.gateway.settings import GatewaySettings
from mcpmesh.gateway.state import STATE, GatewayState
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.service import MeshService, ServiceSettings, call_of
from mcpmesh.service.testing import ServiceHarness
from mcpmesh.store import connect_database
from mcpmesh.tenancy.stamp import generate_signing_key_pem

ADMIN_KEY = "mk_admin_" + "g" * 32
MODERN = "2026-07-28"
LEGACY = "2025-11-25"


def dxp_service() -> MeshService:
    """A test service named like a real one (tenant key scopes must name a known service)."""
    svc = MeshService("dxp", instructions="test service")

    @svc.tool(access="read")
    async def hello(text: str, ctx: Context) -> dict[str, Any]:
        """Greet, and say which tenant the kit handed over."""
        call = call_of(ctx)
        return {"text": f"hi {text}", "org": call.org_id, "key": call.stamp.sub}

    @svc.tool(access="write")
    async def store(value: str) -> str:
        """A tool that needs dxp:write."""
        return f"stored {value}"

    @svc.tool(access="read")
    async def slow(seconds: float) -> str:
        """Sleep, then answer."""
        await asyncio.sleep(seconds)
        return "done"

    @svc.tool(access="read", meta={"mcpmesh/tiers": ["enterprise"]})
    async def premium() -> str:
        """Offered on the enterprise tier only."""
        return "premium"

    @svc.tool(access="read")
    async def refuse() -> str:
        raise MeshException(ErrorCode.NOT_FOUND, "no such thing")

    @svc.tool(access="read")
    async def regional(
        region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})],
    ) -> str:
        """A tool whose region argument is mirrored in an Mcp-Param-Region header (2026-07-28)."""
        return f"served in {region}"

    @svc.resource("dxp://greeting")
    async def greeting() -> str:
        return "hello from dxp"

    @svc.prompt()
    async def greet(name: str) -> str:
        return f"Say hello to {name}"

    return svc


def logs_service() -> MeshService:
    svc = MeshService("logs")

    @svc.tool(access="read")
    async def tail(lines: int = 3) -> list[str]:
        """The last lines."""
        return [f"line {i}" for i in range(lines)]

    @svc.prompt()
    async def summarize() -> str:
        return "Summarize the logs"

    return svc


@dataclasses.dataclass
class Gateway:
    """One gateway replica on a test server."""

    app: web.Application
    client: TestClient[web.Request, web.Application]

    @property
    def state(self) -> GatewayState:
        return self.app[STATE]

    @property
    def url(self) -> str:
        return str(self.client.make_url("/mcp"))

    def base(self, path: str = "") -> str:
        return str(self.client.make_url(path))

    async def post(
        self, body: Any, *, key: str | None, headers: dict[str, str] | None = None, path: str = "/mcp"
    ) -> tuple[int, Any, CIMultiDict[str]]:
        hdrs = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
        if key is not None:
            hdrs["x-api-key"] = key
        hdrs.update(headers or {})
        data = body if isinstance(body, bytes) else msgspec.json.encode(body)
        resp = await self.client.post(path, data=data, headers=hdrs)
        raw = await resp.read()
        try:
            parsed = msgspec.json.decode(raw) if raw else None
        except msgspec.DecodeError:
            parsed = raw
        return resp.status, parsed, CIMultiDict(resp.headers)

    async def rpc(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        key: str | None,
        path: str = "/mcp",
        rpc_id: Any = 1,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, CIMultiDict[str]]:
        """A well-formed 2026-07-28 request (envelope and routing headers filled in)."""
        body = modern_body(method, params, rpc_id=rpc_id)
        hdrs = modern_headers(method, params)
        hdrs.update(headers or {})
        return await self.post(body, key=key, headers=hdrs, path=path)

    async def legacy_session(self, key: str, path: str = "/mcp") -> str:
        """A 2025-11-25 session opened as a client does (initialize, then initialized): its id."""
        init = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": LEGACY,
                "capabilities": {"roots": {"listChanged": True}},
                "clientInfo": {"name": "raw", "version": "1"},
            },
        }
        status, body, headers = await self.post(init, key=key, path=path)
        assert status == 200, body
        assert body["result"]["protocolVersion"] == LEGACY
        assert "resultType" not in body["result"]
        session = headers["Mcp-Session-Id"]
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        status, _, _ = await self.post(initialized, key=key, headers=legacy_headers(session), path=path)
        assert status == 202
        return session


def legacy_headers(session: str | None = None) -> dict[str, str]:
    hdrs = {"mcp-protocol-version": LEGACY}
    if session:
        hdrs["mcp-session-id"] = session
    return hdrs


def modern_body(method: str, params: dict[str, Any] | None = None, *, rpc_id: Any = 1) -> dict[str, Any]:
    p = dict(params or {})
    p["_meta"] = {
        PROTOCOL_VERSION_META_KEY: MODERN,
        CLIENT_CAPABILITIES_META_KEY: {},
        CLIENT_INFO_META_KEY: {"name": "test", "version": "1"},
        **(p.get("_meta") or {}),
    }
    return {"jsonrpc": "2.0", "id": rpc_id, "method": method, "params": p}


def modern_headers(method: str, params: dict[str, Any] | None = None) -> dict[str, str]:
    hdrs = {"mcp-protocol-version": MODERN, "mcp-method": method}
    params = params or {}
    if method in ("tools/call", "prompts/get") and isinstance(params.get("name"), str):
        hdrs["mcp-name"] = params["name"]
    if method == "resources/read" and isinstance(params.get("uri"), str):
        hdrs["mcp-name"] = params["uri"]
    return hdrs


class Mesh:
    """NATS, services and gateway replicas of one test, sharing one signing key and one database
    (named `database`, on the session's MongoDB server; services use databases prefixed by it)."""

    def __init__(self, nats: LocalNatsServer, stack: AsyncExitStack, mongo_url: str) -> None:
        self.nats = nats
        self.stack = stack
        self.mongo_url = mongo_url
        self.signing_pem = generate_signing_key_pem()
        self.database = f"mcpmesh_gw_{uuid.uuid4().hex[:8]}"
        self.gateways: list[Gateway] = []
        self.harnesses: dict[str, ServiceHarness] = {}

    @property
    def nats_url(self) -> str:
        """The bus as the gateway connects to it (its own NATS user)."""
        return self.nats.url_for("gateway")

    async def service(self, svc: MeshService, settings: ServiceSettings | None = None) -> ServiceHarness:
        harness = ServiceHarness(svc, self.nats, settings=settings, signing_key_pem=self.signing_pem)
        await self.stack.enter_async_context(harness)
        self.harnesses[svc.name] = harness
        return harness

    async def dxp(self) -> ServiceHarness:
        return await self.service(dxp_service())

    async def logs(self) -> ServiceHarness:
        return await self.service(logs_service())

    async def gateway(self, **overrides: Any) -> Gateway:
        settings = GatewaySettings(
            stamp_signing_key=self.signing_pem,
            admin_key=ADMIN_KEY,
            nats_url=self.nats_url,
            mongodb_url=self.mongo_url,
            mongodb_database=self.database,
            key_pepper=b"gateway-test-pepper",
            session_secret=b"gateway-test-session-secret",
            discovery_interval_s=0.5,
            replica_name=f"test-{len(self.gateways)}",
        )
        settings = dataclasses.replace(settings, **overrides)
        app = build_app(settings)
        client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
        await client.start_server()
        self.stack.push_async_callback(client.close)
        gw = Gateway(app, client)
        self.gateways.append(gw)
        return gw

    async def admin(self, method: str, path: str, body: Any = None, *, expect: int | None = None) -> Any:
        gw = self.gateways[0]
        resp = await gw.client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        )
        data = await resp.json()
        if expect is not None:
            assert resp.status == expect, (resp.status, data)
        return data

    async def tenant(
        self,
        *,
        scopes: list[str] | None = None,
        tier: str = "pro",
        settings: dict[str, Any] | None = None,
        name: str = "Acme",
        tags: list[str] | None = None,
    ) -> tuple[str, str]:
        """(org id, API key secret) of a new org with one key (with `tags`, if given)."""
        body: dict[str, Any] = {"name": name, "tier": tier}
        if settings:
            body["settings"] = settings
        org = await self.admin("POST", "/admin/orgs", body, expect=201)
        key = await self.key(org["id"], scopes=scopes, tags=tags)
        return org["id"], key["secret"]

    async def key(
        self, org_id: str, *, scopes: list[str] | None = None, tags: list[str] | None = None
    ) -> dict[str, Any]:
        """A new API key of `org_id` (`secret` included)."""
        body: dict[str, Any] = {"name": "k", "scopes": scopes or ["*"], **({"tags": tags} if tags else {})}
        created: dict[str, Any] = await self.admin("POST", f"/admin/orgs/{org_id}/keys", body, expect=201)
        return created

    async def wait_discovered(self, *names: str) -> None:
        for gw in self.gateways:
            for _ in range(100):
                if all(gw.state.discovery.has(n) for n in names):
                    break
                await gw.state.discovery.refresh()
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"services {names} not discovered")


#: How long a test's mesh may take to stop (gateways, services, databases) before the test
#: moves on, with a warning that lists what was still waiting (see `_stop_bounded`).
TEARDOWN_S = 60.0


@pytest.fixture
async def mesh(private_nats: LocalNatsServer, mongo_url: str) -> AsyncIterator[Mesh]:
    """A locked-down nats-server of this test's own (the gateway and each service connect as
    their own NATS user) and databases on the session's MongoDB server, dropped at the end."""
    stack = AsyncExitStack()
    mesh = Mesh(private_nats, stack, mongo_url)
    stack.push_async_callback(drop_databases, mongo_url, mesh.database)
    try:
        yield mesh
    finally:
        await _stop_bounded(stack)


async def _stop_bounded(stack: AsyncExitStack) -> None:
    """Close the mesh within TEARDOWN_S. Rarely (about once per suite run, quiet box or not) a
    stop never finished and hung the whole run; until that is found, the stop is bounded and
    the tasks still waiting are reported (a warning with their stacks) instead of hanging CI."""
    closing = asyncio.ensure_future(stack.aclose())
    done, _ = await asyncio.wait({closing}, timeout=TEARDOWN_S)
    if done:
        closing.result()
        return
    stacks = io.StringIO()
    for task in asyncio.all_tasks():
        if task is not asyncio.current_task():
            task.print_stack(limit=12, file=stacks)
    warnings.warn(
        f"the test mesh did not stop within {TEARDOWN_S:g} s; waiting:\n{stacks.getvalue()}", stacklevel=1
    )
    closing.cancel()
    await asyncio.wait({closing}, timeout=5)


async def drop_databases(mongo_url: str, prefix: str) -> None:
    """Drop the test's databases (its gateway's, and its services' named after it). Cleanup
    only (the names are the test's own): bounded, so a stalled store cannot hang the session."""
    client = connect_database(mongo_url, prefix).client
    try:
        async with asyncio.timeout(30):
            for name in await client.list_database_names():
                if name.startswith(prefix):
                    await client.drop_database(name)
    except TimeoutError:
        warnings.warn(f"databases {prefix}* not dropped within 30 s: left on the test store", stacklevel=1)
    finally:
        client.close()


@pytest.fixture
async def dxp_mesh(mesh: Mesh) -> AsyncIterator[tuple[Mesh, Gateway]]:
    """The dxp and logs test services behind one gateway."""
    await mesh.dxp()
    await mesh.logs()
    gw = await mesh.gateway()
    await mesh.wait_discovered("dxp", "logs")
    yield mesh, gw


@pytest.fixture
async def context_mesh(mesh: Mesh) -> AsyncIterator[tuple[Mesh, Gateway]]:
    """The real mcp-context service behind one gateway."""
    service = build_service(ContextSettings(sweep_interval_s=0))
    settings = ServiceSettings(mongodb_url=mesh.mongo_url, mongodb_database=mesh.database + "_ctx")
    await mesh.service(service, settings)
    gw = await mesh.gateway()
    await mesh.wait_discovered("context")
    yield mesh, gw
