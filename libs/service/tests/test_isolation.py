"""Isolation by construction in the kit: a handler's own org through `call.store`, another org's
only through a grant its check finds now; state from a typed lifespan, closed at stop."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from mcp.server.mcpserver import Context

from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.service import MeshService, ServiceSettings, call_of
from mcpmesh.service.grants import reach_shared
from mcpmesh.service.testing import LocalHarness, ServiceHarness, ToolFailed
from mcpmesh.store import TenantStore

A, B, C = "org-acme", "org-globex", "org-initech"


def _own_database(mongo_url: str) -> ServiceSettings:
    """Settings with a database of this test's own on the session's server."""
    return ServiceSettings(mongodb_url=mongo_url, mongodb_database=f"iso_{uuid.uuid4().hex[:10]}")


def _notes(checked: list[str]) -> MeshService:
    """Notes an org may let another org read; `checked` records each grant check's owner."""
    service = MeshService("notes", store_kinds={"notes": [], "readers": []})

    @service.tool(access="write", open_world=False)
    async def write(text: str, ctx: Context) -> str:
        """Write a note."""
        await (await call_of(ctx).store.collection("notes")).insert_one({"text": text})
        return "ok"

    @service.tool(access="write", open_world=False)
    async def allow(reader: str, ctx: Context, allowed: bool = True) -> str:
        """Let `reader` read this org's notes (or stop letting it)."""
        readers = await call_of(ctx).store.collection("readers")
        if allowed:
            await readers.replace_one({"_id": reader}, {"_id": reader}, upsert=True)
        else:
            await readers.delete_one({"_id": reader})
        return "ok"

    @service.tool(access="read", open_world=False)
    async def read(ctx: Context, owner: str | None = None) -> list[str]:
        """This org's notes, or `owner`'s when it lets this org read them."""
        call = call_of(ctx)
        store = call.store
        if owner is not None:

            async def lets_caller_read(owner_store: TenantStore) -> str | None:
                checked.append(owner_store.org_id)
                readers = await owner_store.collection("readers")
                return "reader" if await readers.find_one({"_id": call.org_id}) else None

            shared = await call.shared(owner, lets_caller_read)
            if shared is None:
                raise MeshException(ErrorCode.NOT_FOUND, "no notes of that org are shared with yours")
            store = shared.store
        notes = await store.collection("notes")
        return [doc["text"] async for doc in notes.find({}).sort("_id", 1)]

    return service


async def test_another_orgs_data_only_through_a_grant_checked_on_every_access(mongo_url: str) -> None:
    checked: list[str] = []
    service = _notes(checked)
    async with LocalHarness(service, settings=_own_database(mongo_url)) as local:
        await local.call_tool(A, "write", {"text": "acme secret"})
        await local.call_tool(B, "write", {"text": "globex note"})
        assert await local.call_tool(B, "read") == ["globex note"]  # call.store: its own org only
        with pytest.raises(ToolFailed) as refused:
            await local.call_tool(B, "read", {"owner": A})
        assert "not_found: no notes of that org are shared with yours" in refused.value.text
        assert checked == [A]  # the check ran against the owner's store, and found no grant
        await local.call_tool(A, "allow", {"reader": B})
        assert await local.call_tool(B, "read", {"owner": A}) == ["acme secret"]
        with pytest.raises(ToolFailed):  # the grant is A's to B, not to C
            await local.call_tool(C, "read", {"owner": A})
        await local.call_tool(A, "allow", {"reader": B, "allowed": False})
        with pytest.raises(ToolFailed):  # revoked: refused from the next call on, nothing cached
            await local.call_tool(B, "read", {"owner": A})
        assert checked == [A] * 4
        assert await local.call_tool(A, "read") == ["acme secret"]
        await service.store.db.client.drop_database(service.store.db.name)


async def test_a_grant_is_for_another_org_and_a_bad_org_id_reaches_nothing(mongo_url: str) -> None:
    service = _notes([])
    async with LocalHarness(service, settings=_own_database(mongo_url)):

        async def anything(_: TenantStore) -> str:
            return "granted"

        with pytest.raises(ValueError, match=r"through call\.store"):
            await reach_shared(service.store, A, A, anything)
        with pytest.raises(ValueError, match="org"):  # validated before any check or collection
            await reach_shared(service.store, A, "org-x__notes", anything)


@dataclass
class Ticker:
    """A typed lifespan state: a background task and a flag set when the lifespan exited."""

    ticks: int = 0
    task: asyncio.Task[None] | None = None
    closed: bool = False
    ticked_twice: asyncio.Event = field(default_factory=asyncio.Event)


def _ticking() -> MeshService:
    @asynccontextmanager
    async def lifespan(service: MeshService) -> AsyncIterator[Ticker]:
        state = Ticker()

        async def tick() -> None:
            while True:
                state.ticks += 1
                if state.ticks >= 2:
                    state.ticked_twice.set()
                await asyncio.sleep(0.01)

        state.task = asyncio.get_running_loop().create_task(tick())
        _ = service.store, service.vectors  # opened at start: the kit closes them at stop
        try:
            yield state
        finally:
            state.task.cancel()
            await asyncio.gather(state.task, return_exceptions=True)
            state.closed = True

    service = MeshService("hooks", store_kinds={"notes": []}, uses_vectors=True, lifespan=lifespan)

    @service.tool(access="read", open_world=False)
    async def ticks(ctx: Context) -> int:
        """How often the background task ticked."""
        return call_of(ctx).state(Ticker).ticks

    return service


async def test_the_lifespan_state_reaches_handlers_and_everything_opened_is_closed_at_stop(
    nats_server: LocalNatsServer,
) -> None:
    service = _ticking()
    settings = dataclasses.replace(
        ServiceSettings(), mongodb_url="mongodb://127.0.0.1:9", qdrant_url=None, qdrant_path=":memory:"
    )
    async with ServiceHarness(service, nats_server, settings=settings) as harness:
        state = service.state(Ticker)
        await state.ticked_twice.wait()
        assert await harness.call_tool(A, "ticks") >= 2
        assert harness.server is not None
        bus = harness.server.bus
        mongo: Any = service.store.db.client
        qdrant: Any = service.vectors.client
    assert state.closed and state.task is not None and state.task.cancelled()
    assert bus.nc.is_closed
    assert mongo.delegate._closed  # pymongo's own flag: close() was called
    assert qdrant.closed and qdrant._client._client.closed  # LocalQdrant's flag and qdrant local mode's own
    with pytest.raises(MeshException, match="not running"):
        service.state(Ticker)


def test_state_is_checked_against_its_declared_type() -> None:
    service = _ticking()
    service._state = "not a ticker"  # what a wrong lifespan would yield
    with pytest.raises(MeshException, match="no Ticker state"):
        service.state(Ticker)
