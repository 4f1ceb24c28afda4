"""Two replicas of the service on one database (two ServiceHarness instances), each called
directly: what one replica changes or counts, the other sees."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.llm import LlmSettings, build_service, configcache
from mcpmesh.llm.testing import FakeProvider
from mcpmesh.service.testing import LocalHarness, ServiceHarness
from mcpmesh.store import connect_database

from .conftest import ADMIN, SYSTEM_KEY, fresh_database, org

HI = [{"role": "user", "content": "hi there"}]


class Replicas:
    def __init__(self, harnesses: list[ServiceHarness], database: str) -> None:
        self.database = database
        # Called in process, so a call reaches the replica named (on the bus either might answer).
        self.direct = [
            LocalHarness(h.service, settings=h.settings, signing_key_pem=h.signing_key_pem) for h in harnesses
        ]

    async def call(self, replica: int, org_id: str, tool: str, args: dict[str, Any] | None = None) -> Any:
        return await self.direct[replica].call_tool(org_id, tool, args or {}, scopes=ADMIN)


@contextlib.asynccontextmanager
async def running(
    nats_server: LocalNatsServer, mongo_url: str, settings: LlmSettings
) -> AsyncIterator[Replicas]:
    """Two replicas on one new database."""
    async with fresh_database(mongo_url) as store:
        first = ServiceHarness(build_service(settings), nats_server, settings=store)
        second = ServiceHarness(
            build_service(settings), nats_server, settings=store, signing_key_pem=first.signing_key_pem
        )
        async with first, second:
            yield Replicas([first, second], store.mongodb_database)


@pytest.fixture
async def replicas(
    nats_server: LocalNatsServer,
    mongo_url: str,
    llm_settings: LlmSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Replicas]:
    monkeypatch.setenv("TEST_LLM_SYSTEM_KEY", SYSTEM_KEY)
    async with running(nats_server, mongo_url, llm_settings) as started:
        yield started


@pytest.fixture
def llm_settings(llm_settings: LlmSettings) -> LlmSettings:
    return replace(llm_settings, config_ttl_s=5.0)


async def test_an_org_configuration_is_kept_briefly_and_another_replicas_edit_is_seen_after_it(
    replicas: Replicas, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(configcache, "now", lambda: clock[0])
    a = org()
    assert (await replicas.call(0, a, "chat", {"messages": HI}))["served_by"] == "sysa/big"
    await replicas.call(1, a, "set_aliases", {"aliases": {"default": "big2"}})
    # The editing replica sees its edit at once; the other keeps what it read (no store reads)...
    assert (await replicas.call(1, a, "chat", {"messages": HI}))["served_by"] == "sysb/big2"
    clock[0] += 4.9
    assert (await replicas.call(0, a, "chat", {"messages": HI}))["served_by"] == "sysa/big"
    # ...until it is LLM_CONFIG_TTL_S old.
    clock[0] += 0.2
    assert (await replicas.call(0, a, "chat", {"messages": HI}))["served_by"] == "sysb/big2"
    # The admin tools always read the store.
    assert (await replicas.call(0, a, "providers"))["aliases"]["default"] == "big2"


@pytest.fixture
async def own() -> AsyncIterator[FakeProvider]:
    async with FakeProvider(reply="from the org's own endpoint") as provider:
        yield provider


async def own_provider(replicas: Replicas, org_id: str, own: FakeProvider, **limits: int) -> None:
    models = [{"name": "big", "class": "large"}]
    await replicas.call(
        0, org_id, "set_provider", {"name": "mine", "api_base": own.url, "models": models, **limits}
    )


@pytest.mark.usefixtures("one_minute")
async def test_an_org_providers_rpm_is_shared_by_the_replicas(replicas: Replicas, own: FakeProvider) -> None:
    a = org()
    await own_provider(replicas, a, own, rpm=3)
    served = [(await replicas.call(i % 2, a, "chat", {"messages": HI}))["served_by"] for i in range(5)]
    assert served == ["mine/big"] * 3 + ["sysa/big"] * 2
    assert len(own.requests) == 3


@pytest.mark.usefixtures("one_minute")
async def test_replicas_admitting_at_once_never_pass_the_rpm_together(
    replicas: Replicas, own: FakeProvider
) -> None:
    a = org()
    await own_provider(replicas, a, own, rpm=3)
    answers = await asyncio.gather(*(replicas.call(i % 2, a, "chat", {"messages": HI}) for i in range(8)))
    assert sorted(x["served_by"] for x in answers) == ["mine/big"] * 3 + ["sysa/big"] * 5
    assert len(own.requests) == 3


@pytest.mark.usefixtures("one_minute")
async def test_an_org_providers_tpm_is_shared_by_the_replicas(replicas: Replicas, own: FakeProvider) -> None:
    a = org()
    await own_provider(replicas, a, own, tpm=30)  # one call spends 18 tokens
    assert (await replicas.call(0, a, "chat", {"messages": HI}))["served_by"] == "mine/big"
    assert (await replicas.call(1, a, "chat", {"messages": HI}))["served_by"] == "mine/big"
    third = await replicas.call(0, a, "chat", {"messages": HI})
    assert third["served_by"] == "sysa/big"
    assert [(t["provider"], t["status"]) for t in third["fallbacks_tried"]] == [("mine", "tpm")]


@pytest.mark.usefixtures("one_minute")
async def test_a_system_providers_rpm_is_one_count_for_every_org_and_replica(
    nats_server: LocalNatsServer,
    mongo_url: str,
    llm_settings: LlmSettings,
    fake: FakeProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_LLM_SYSTEM_KEY", SYSTEM_KEY)
    table = [dict(p) for p in llm_settings.providers]
    next(p for p in table if p["name"] == "sysa")["rpm"] = 3
    async with running(nats_server, mongo_url, replace(llm_settings, providers=table)) as r:
        orgs = [org(), org()]
        served = [
            (await r.call(i % 2, orgs[i // 2 % 2], "chat", {"messages": HI}))["served_by"] for i in range(5)
        ]
        assert served == ["sysa/big"] * 3 + ["sysb/big"] * 2  # two orgs, two replicas: one count
        assert len(fake.requests) == 3
        answers = await asyncio.gather(*(r.call(i % 2, org(), "chat", {"messages": HI}) for i in range(6)))
        assert {x["served_by"] for x in answers} == {"sysb/big"} and len(fake.requests) == 3
        # The count is the system org's, in its store; no caller's store holds it.
        db = connect_database(mongo_url, r.database)
        try:
            windows = await db["org-system__llm_limits"].find().to_list(None)
            assert [(w["_id"].split("|")[0], w["requests"]) for w in windows] == [("system-provider:sysa", 3)]
            for o in orgs:
                assert await db[f"{o}__llm_limits"].count_documents({}) == 0
        finally:
            db.client.close()
