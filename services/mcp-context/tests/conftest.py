"""A fresh context service with a database of its own per test (on the session's MongoDB
server): on the session's nats-server (`mesh`), or in process without NATS (`local_mesh`)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from mcpmesh.context import ContextSettings, build_service
from mcpmesh.context.testing import Mesh
from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.service import ServiceSettings
from mcpmesh.service.testing import LocalHarness, ServiceHarness
from mcpmesh.store import connect_database


@pytest.fixture
def context_settings() -> ContextSettings:
    return ContextSettings(sweep_interval_s=0)


async def _drop(mongo_url: str, database: str) -> None:
    db = connect_database(mongo_url, database)
    await db.client.drop_database(database)
    db.client.close()


@pytest.fixture
async def mesh(
    nats_server: LocalNatsServer, mongo_url: str, context_settings: ContextSettings
) -> AsyncIterator[Mesh]:
    database = f"ctx_test_{uuid.uuid4().hex[:10]}"
    service = build_service(context_settings)
    settings = ServiceSettings(mongodb_url=mongo_url, mongodb_database=database)
    async with ServiceHarness(service, nats_server, settings=settings) as harness:
        yield Mesh(harness)
    await _drop(mongo_url, database)


@pytest.fixture
async def local_mesh(mongo_url: str, context_settings: ContextSettings) -> AsyncIterator[Mesh]:
    """The same service driven in process (LocalHarness): no NATS, org settings are tier defaults."""
    database = f"ctx_test_{uuid.uuid4().hex[:10]}"
    service = build_service(context_settings)
    settings = ServiceSettings(mongodb_url=mongo_url, mongodb_database=database)
    async with LocalHarness(service, settings=settings) as harness:
        yield Mesh(harness)
    await _drop(mongo_url, database)
