"""A fresh context service on the session's nats-server, with its own embedded database per test."""

from __future__ import annotations

import dataclasses
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


@pytest.fixture
async def mesh(nats_server: LocalNatsServer, context_settings: ContextSettings) -> AsyncIterator[Mesh]:
    database = f"ctx_test_{uuid.uuid4().hex[:10]}"
    service = build_service(context_settings)
    settings = dataclasses.replace(
        ServiceSettings.from_env(), mongodb_database=database
    )  # honours MONGODB_URL
    async with ServiceHarness(service, nats_server, settings=settings) as harness:
        yield Mesh(harness)
    await connect_database(settings.mongodb_url, database).client.drop_database(database)


@pytest.fixture
async def local_mesh(context_settings: ContextSettings) -> AsyncIterator[Mesh]:
    """The same service driven in process (LocalHarness): no NATS, org settings are tier defaults."""
    database = f"ctx_test_{uuid.uuid4().hex[:10]}"
    service = build_service(context_settings)
    settings = dataclasses.replace(ServiceSettings.from_env(), mongodb_database=database)
    async with LocalHarness(service, settings=settings) as harness:
        yield Mesh(harness)
    await connect_database(settings.mongodb_url, database).client.drop_database(database)
