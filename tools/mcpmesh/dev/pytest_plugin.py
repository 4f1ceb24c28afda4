"""Fixtures every test may use: a real nats-server, MongoDB and Qdrant handles.

MongoDB and Qdrant run on their embedded defaults (mongomock-motor, Qdrant local
mode) unless `MONGODB_URL` / `QDRANT_URL` point at real servers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

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


@pytest.fixture
async def mongo_db() -> AsyncIterator[object]:
    """A fresh MongoDB database handle (embedded unless MONGODB_URL is set)."""
    from mcpmesh.store import connect_database

    name = f"mcpmesh_test_{uuid.uuid4().hex[:8]}"
    db = connect_database(os.environ.get("MONGODB_URL"), name)
    yield db
    await db.client.drop_database(name)


@pytest.fixture
async def qdrant(tmp_path: Path) -> AsyncIterator[object]:
    """An AsyncQdrantClient: QDRANT_URL when set, else local mode in a temp dir."""
    from mcpmesh.vectors import connect_qdrant

    client = connect_qdrant(os.environ.get("QDRANT_URL"), path=str(tmp_path / "qdrant"))
    yield client
    await client.close()
