"""Fixtures every test may use: a real nats-server, a MongoDB server, and Qdrant handles.

MongoDB is one SecantusDB server process for the whole session (the embedded store of
`./mesh up`), unless `MONGODB_URL` points at a MongoDB server; every test that needs a
database gets a fresh one on it. Qdrant runs in local mode unless `QDRANT_URL` is set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from mcpmesh.dev.mongoproc import LocalMongoServer
from mcpmesh.dev.natsproc import ContainerNatsServer, LocalNatsServer, start_nats


@pytest.fixture(scope="session")
def nats_server() -> Iterator[LocalNatsServer | ContainerNatsServer]:
    """One nats-server (JetStream on) for the whole test session."""
    server = start_nats()
    yield server
    server.close()


@pytest.fixture(scope="session")
def nats_url(nats_server: LocalNatsServer | ContainerNatsServer) -> str:
    return nats_server.url


@pytest.fixture
def private_nats() -> Iterator[LocalNatsServer]:
    """A nats-server of this test's own, for tests that stop or restart it."""
    server = LocalNatsServer()
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
