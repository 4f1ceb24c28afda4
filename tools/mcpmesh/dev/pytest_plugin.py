"""Fixtures every test may use: a real nats-server, a MongoDB server, and Qdrant handles.

NATS runs locked down as `./mesh up` runs it: the mesh's users and permissions
(`mcpmesh.tenancy.natsauth`), so every component of a test connects as itself:
`nats_server.url_for("svc-context")`, `nats_server.url_for("org-acme")`; `nats_url` is the
gateway's URL. `ServiceHarness(service, nats_server)` runs a service as `svc-<name>`.

MongoDB is one SecantusDB server process for the whole session (the embedded store of
`./mesh up`), unless `MONGODB_URL` points at a MongoDB server; every test that needs a
database gets a fresh one on it. Qdrant runs in local mode unless `QDRANT_URL` is set.
`azurite` is one Azurite (Azure Blob emulator) for the session (`mcpmesh.dev.azuriteproc`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from mcpmesh.dev.mongoproc import LocalMongoServer
from mcpmesh.dev.natsproc import LocalNatsServer

#: Orgs with an internal publisher in the test fixtures' NATS.
TEST_ORGS = ("org-acme", "org-globex")
#: Service names tests use besides the real ones. Any other is added on demand, but that
#: reloads the server, and a reload makes nats-server forget the reply permissions of
#: requests in flight at that instant (libs/tenancy/README.md): better none mid-session.
TEST_SERVICES = (
    "echo",
    "streamer",
    "notes",
    "hooks",
    "tiered",
    "late",
    "silent",
    "broken",
    "annotated",
    "slowpoke",
    "slow",
    "work",
    "vault",
    "crunch",
    "hopa",
    "hopb",
    "hopc",
)


def secured_nats() -> LocalNatsServer:
    """A nats-server with the mesh's users: the gateway, every service and TEST_ORGS' publishers."""
    from mcpmesh.proto.ids import SERVICES
    from mcpmesh.tenancy.natsauth import BusUsers, mesh_users

    return LocalNatsServer(users=BusUsers.generate(mesh_users((*SERVICES, *TEST_SERVICES), TEST_ORGS)))


@pytest.fixture(scope="session")
def nats_server() -> Iterator[LocalNatsServer]:
    """One locked-down nats-server (JetStream on) for the whole test session."""
    server = secured_nats()
    yield server
    server.close()


@pytest.fixture(scope="session")
def nats_url(nats_server: LocalNatsServer) -> str:
    """The session server as the gateway connects to it."""
    return nats_server.url_for("gateway")


@pytest.fixture
def private_nats() -> Iterator[LocalNatsServer]:
    """A locked-down nats-server of this test's own, for tests that stop or restart it."""
    server = secured_nats()
    yield server
    server.close()


@pytest.fixture(scope="session")
def mongo_url() -> Iterator[str]:
    """MONGODB_URL when set, else the URL of one SecantusDB server shared by the whole session."""
    url = os.environ.get("MONGODB_URL")
    if url:
        yield url
        return
    server = LocalMongoServer()
    yield server.url
    server.close()


@pytest.fixture
async def mongo_db(mongo_url: str) -> AsyncIterator[object]:
    """A fresh database of this test's own on the session's MongoDB server, dropped afterwards."""
    from mcpmesh.store import connect_database

    name = f"mcpmesh_test_{uuid.uuid4().hex[:8]}"
    db = connect_database(mongo_url, name)
    yield db
    await db.client.drop_database(name)
    db.client.close()


@pytest.fixture
async def qdrant(tmp_path: Path) -> AsyncIterator[object]:
    """An AsyncQdrantClient: QDRANT_URL when set, else local mode in a temp dir."""
    from mcpmesh.vectors import connect_qdrant

    client = connect_qdrant(os.environ.get("QDRANT_URL"), path=str(tmp_path / "qdrant"))
    yield client
    await client.close()


@pytest.fixture(scope="session")
def azurite() -> Iterator[object]:
    """A LocalAzurite (`mcpmesh.dev.azuriteproc`): the Azure Blob API emulator, one per session
    (npm installs the pinned package into the cache on first use)."""
    from mcpmesh.dev.azuriteproc import LocalAzurite

    with LocalAzurite() as server:
        yield server
