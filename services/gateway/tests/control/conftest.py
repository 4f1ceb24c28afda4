"""Control-plane fixtures: a Store on a fresh database, a bus, and the admin API on a test server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from mcpmesh.bus import Bus, connect
from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.gateway.control import ControlPlane
from mcpmesh.store import Store
from mcpmesh.tenancy.stamp import generate_signing_key_pem

ADMIN_KEY = "mk_admin_" + "x" * 32
PEPPER = b"test-pepper"
#: The gateway's stamp key in these tests: it signs tenant commands, services verify them.
SIGNING_PEM = generate_signing_key_pem()


@dataclass
class Admin:
    """The admin API of one ControlPlane on a test server."""

    plane: ControlPlane
    client: TestClient[web.Request, web.Application]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_KEY}"}

    async def call(self, method: str, path: str, body: Any = None, *, expect: int | None = None) -> Any:
        resp = await self.client.request(method, path, json=body, headers=self.headers)
        data = await resp.json()
        if expect is not None:
            assert resp.status == expect, (resp.status, data)
        return data

    async def org(self, name: str = "Acme", **extra: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("POST", "/admin/orgs", {"name": name, **extra}, expect=201)
        return result

    async def key(self, org_id: str, scopes: list[str] | None = None, **extra: Any) -> dict[str, Any]:
        body = {"name": "k", "scopes": scopes or ["*"], **extra}
        result: dict[str, Any] = await self.call("POST", f"/admin/orgs/{org_id}/keys", body, expect=201)
        return result


PlaneFactory = Callable[..., Awaitable[ControlPlane]]


@pytest.fixture
async def stream_prefix() -> str:
    return uuid.uuid4().hex[:6]


@pytest.fixture
async def make_plane(mongo_db: Any, nats_url: str) -> AsyncIterator[PlaneFactory]:
    """Build ControlPlanes (gateway replicas) sharing one database and one nats-server."""
    planes: list[ControlPlane] = []
    buses: list[Bus] = []

    async def make(**options: Any) -> ControlPlane:
        bus = await connect(nats_url, name="control-test")
        buses.append(bus)
        plane = ControlPlane(
            Store(mongo_db, {}),
            bus,
            admin_key=ADMIN_KEY,
            stamp_signing_key=SIGNING_PEM,
            key_pepper=PEPPER,
            **options,
        )
        await plane.start()
        planes.append(plane)
        return plane

    yield make
    for plane in planes:
        await plane.stop()
    for bus in buses:
        await bus.close()


class ServiceBuses:
    """A NATS connection per service user, opened on first use: a test publishes usage events
    as the service they name, the only user the broker lets publish on `usage.*.<service>`."""

    def __init__(self, server: LocalNatsServer) -> None:
        self.server = server
        self._buses: dict[str, Bus] = {}

    async def bus(self, service: str) -> Bus:
        if service not in self._buses:
            self._buses[service] = await connect(self.server.url_for(f"svc-{service}"), name=service)
        return self._buses[service]

    async def close(self) -> None:
        for bus in self._buses.values():
            await bus.close()


@pytest.fixture
async def services(nats_server: LocalNatsServer) -> AsyncIterator[ServiceBuses]:
    buses = ServiceBuses(nats_server)
    yield buses
    await buses.close()


@pytest.fixture
async def admin(make_plane: PlaneFactory) -> AsyncIterator[Admin]:
    plane = await make_plane()
    app = web.Application()
    plane.add_routes(app)
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    yield Admin(plane, client)
    await client.close()
