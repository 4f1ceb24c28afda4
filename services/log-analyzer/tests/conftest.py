"""A fresh log-analyzer on the session's nats-server, with a database of its own per test, and
helpers to put generated logs into the session's Azurite and to run source jobs to the end."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from mcpmesh.dev.azuriteproc import LocalAzurite
from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.logs import LogsSettings
from mcpmesh.logs.service import build_service
from mcpmesh.logs.testing import Logs
from mcpmesh.secrets.keys import new_master_key_entry
from mcpmesh.service import ServiceSettings
from mcpmesh.service.testing import ServiceHarness
from mcpmesh.store import connect_database


@pytest.fixture
async def service_settings(mongo_url: str) -> AsyncIterator[ServiceSettings]:
    """Kit settings on a database of this test's own (dropped afterwards), with a master key."""
    database = f"logs_test_{uuid.uuid4().hex[:10]}"
    yield ServiceSettings(
        mongodb_url=mongo_url, mongodb_database=database, secrets_keys=new_master_key_entry("test")
    )
    db = connect_database(mongo_url, database)
    await db.client.drop_database(database)
    db.client.close()


@pytest.fixture
async def logs(
    nats_server: LocalNatsServer, azurite: LocalAzurite, service_settings: ServiceSettings
) -> AsyncIterator[Logs]:
    service = build_service(LogsSettings(allow_http=True))
    async with ServiceHarness(service, nats_server, settings=service_settings) as harness:
        yield Logs(harness, azurite, [])
