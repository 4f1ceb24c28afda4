"""dxp on the session's nats-server with the sandbox (a fake Deployment API on the session's
Azurite), and log-analyzer beside it for the log tools; a database of their own per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from mcpmesh.dev.azuriteproc import LocalAzurite
from mcpmesh.dev.dxpsandbox import Sandbox
from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.dxp.service import build_service
from mcpmesh.dxp.settings import DxpSettings
from mcpmesh.dxp.testing import Dxp
from mcpmesh.logs import LogsSettings
from mcpmesh.logs.service import build_service as build_logs
from mcpmesh.secrets.keys import new_master_key_entry
from mcpmesh.service import ServiceSettings
from mcpmesh.service.testing import ServiceHarness
from mcpmesh.store import connect_database
from mcpmesh.tenancy.stamp import generate_signing_key_pem

FAST = DxpSettings(
    allow_http=True, backoff_s=0.01, max_retry_after_s=5, monitor_poll_s=0.05, per_minute=1000, per_hour=10000
)


@pytest.fixture
async def databases(mongo_url: str) -> AsyncIterator[list[ServiceSettings]]:
    """Kit settings for dxp and log-analyzer, each on a database of this test's own."""
    names = [f"dxp_test_{uuid.uuid4().hex[:10]}", f"dxplogs_test_{uuid.uuid4().hex[:10]}"]
    key = new_master_key_entry("test")
    yield [ServiceSettings(mongodb_url=mongo_url, mongodb_database=n, secrets_keys=key) for n in names]
    for name in names:
        db = connect_database(mongo_url, name)
        await db.client.drop_database(name)
        db.client.close()


@pytest.fixture
async def sandbox(azurite: LocalAzurite) -> AsyncIterator[Sandbox]:
    server = await Sandbox(step_s=0.3, azurite=azurite, log_hours=3, log_per_minute=5).start()
    yield server
    await server.stop()


@pytest.fixture
def dxp_settings() -> DxpSettings:
    return FAST


@pytest.fixture
async def dxp(
    nats_server: LocalNatsServer,
    sandbox: Sandbox,
    databases: list[ServiceSettings],
    dxp_settings: DxpSettings,
) -> AsyncIterator[Dxp]:
    key = generate_signing_key_pem()  # one stamp key: dxp's stamp is verified by log-analyzer
    dxp_harness = ServiceHarness(
        build_service(dxp_settings), nats_server, settings=databases[0], signing_key_pem=key
    )
    logs = ServiceHarness(
        build_logs(LogsSettings(allow_http=True)), nats_server, settings=databases[1], signing_key_pem=key
    )
    async with dxp_harness, logs:
        yield Dxp(dxp_harness, sandbox, logs)
