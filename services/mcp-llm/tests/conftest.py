"""A fresh llm service per test (real nats-server, its own database on the session's MongoDB
server) in front of two scripted OpenAI-compatible fake providers (`fake`, `fake2`)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.llm import LlmSettings, app_of, build_service, limits
from mcpmesh.llm.app import LlmApp
from mcpmesh.llm.testing import FakeProvider
from mcpmesh.proto.tiers import ORG_SETTINGS_BUCKET, tier_defaults
from mcpmesh.secrets import new_master_key_entry
from mcpmesh.service import ServiceSettings
from mcpmesh.service.testing import ServiceHarness, ToolFailed
from mcpmesh.store import connect_database

SYSTEM_KEY = "sk-system-" + "s" * 24
ADMIN = ["llm:read", "llm:write", "llm:admin"]


def system_table(a: FakeProvider, b: FakeProvider) -> list[dict[str, Any]]:
    """mock (offline), then two system providers of one model class: `big` on A, `big2` on B."""
    priced = {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}
    return [
        {"name": "mock", "kind": "mesh-offline"},
        {
            "name": "sysa",
            "kind": "openai",
            "api_base": a.url,
            "api_key_env": "TEST_LLM_SYSTEM_KEY",
            "models": [
                {"name": "big", "model": "big-upstream", "class": "large", **priced},
                {"name": "emb", "mode": "embedding", "class": "emb", **priced},
            ],
        },
        {
            "name": "sysb",
            "kind": "openai",
            "api_base": b.url,
            "api_key_env": "TEST_LLM_SYSTEM_KEY",
            "models": [
                {"name": "big2", "class": "large", **priced},
                {"name": "big", "class": "large", **priced},
            ],
        },
    ]


@dataclass
class Llm:
    harness: ServiceHarness
    fake: FakeProvider
    fake2: FakeProvider

    @property
    def app(self) -> LlmApp:
        return app_of(self.harness.service)

    async def call(
        self, org: str, tool: str, args: dict[str, Any] | None = None, *, scopes: list[str] | None = None
    ) -> Any:
        return await self.harness.call_tool(org, tool, args or {}, scopes=scopes or ADMIN)

    async def fails(
        self, org: str, tool: str, args: dict[str, Any] | None = None, *, scopes: list[str] | None = None
    ) -> ToolFailed:
        try:
            result = await self.harness.call_tool(org, tool, args or {}, scopes=scopes or ADMIN)
        except ToolFailed as exc:
            return exc
        raise AssertionError(f"{tool} was expected to fail but returned {result!r}")

    async def settings(self, org: str, **overrides: Any) -> None:
        """Publish the org's settings as the gateway would (NATS KV), over the pro tier's."""
        assert self.harness.client is not None
        kv = await self.harness.client.kv(ORG_SETTINGS_BUCKET)
        await kv.put(org, msgspec.json.encode(msgspec.structs.replace(tier_defaults("pro"), **overrides)))


def org() -> str:
    return f"org-llm-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def one_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-minute limits' clock stands still: every call of the test falls in one window."""
    frozen = limits.now()
    monkeypatch.setattr(limits, "now", lambda: frozen)


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as provider:
        yield provider


@pytest.fixture
async def fake2() -> AsyncIterator[FakeProvider]:
    async with FakeProvider(reply="second provider here") as provider:
        yield provider


@pytest.fixture
def llm_settings(fake: FakeProvider, fake2: FakeProvider) -> LlmSettings:
    return LlmSettings(
        providers=system_table(fake, fake2),
        aliases={"default": "big", "fast": "big2", "cheap": "echo", "embed": "emb"},
        provider_timeout_s=2.0,
        cooldown_s=0,
        allow_private_endpoints=True,  # the fakes listen on 127.0.0.1
        embed_batch=2,
    )


@pytest.fixture
async def llm(
    nats_server: LocalNatsServer,
    mongo_url: str,
    llm_settings: LlmSettings,
    fake: FakeProvider,
    fake2: FakeProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Llm]:
    monkeypatch.setenv("TEST_LLM_SYSTEM_KEY", SYSTEM_KEY)
    async with (
        fresh_database(mongo_url) as settings,
        ServiceHarness(build_service(llm_settings), nats_server, settings=settings) as harness,
    ):
        yield Llm(harness, fake, fake2)


@contextlib.asynccontextmanager
async def fresh_database(mongo_url: str) -> AsyncIterator[ServiceSettings]:
    """The service's settings on a new database, dropped after."""
    database = f"llm_test_{uuid.uuid4().hex[:10]}"
    yield ServiceSettings(
        mongodb_url=mongo_url, mongodb_database=database, secrets_keys=new_master_key_entry("t1")
    )
    db = connect_database(mongo_url, database)
    await db.client.drop_database(database)
    db.client.close()
