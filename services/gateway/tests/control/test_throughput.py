"""What keeps the control plane off the gateway's hot path: writers that batch and can run on
one designated replica only, and a key-use flush that is cheap, bounded and loses nothing."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from mcpmesh.gateway.control import audit, key_use
from mcpmesh.gateway.control.bulk import Update, update_each
from mcpmesh.gateway.control.usage import UsageRollup
from mcpmesh.gateway.settings import GatewaySettings, SettingsError
from mcpmesh.proto.events import UsageEvent

from .conftest import Admin, PlaneFactory, ServiceBuses
from .test_usage import event, publish, totals_become


async def test_writers_can_run_on_one_replica_only(
    make_plane: PlaneFactory, admin: Admin, services: ServiceBuses
) -> None:
    serving = await make_plane(run_writers=False)
    assert not serving.usage_writer.running and not serving.audit_writer.running
    assert admin.plane.usage_writer.running and admin.plane.audit_writer.running
    org = (await admin.org())["id"]
    before = admin.plane.usage_writer.written
    await publish(services, [event(org) for _ in range(10)])
    await totals_become(admin, f"org_id={org}", 10)
    # The counts are visible a moment before the writer finishes the batch and counts it written.
    for _ in range(250):
        if admin.plane.usage_writer.written - before >= 10:
            break
        await asyncio.sleep(0.02)
    assert admin.plane.usage_writer.written - before == 10  # all of it by the writer replica
    assert serving.usage_writer.written == 0
    await serving.stop()  # stopping a replica without writers stops cleanly


def test_run_writers_setting() -> None:
    base = {"MCPMESH_STAMP_SIGNING_KEY": "pem", "MCPMESH_ADMIN_KEY": "k" * 20}
    assert GatewaySettings.from_env(base).run_writers is True
    for raw, expected in (("false", False), ("0", False), ("no", False), ("TRUE", True), ("1", True)):
        assert GatewaySettings.from_env({**base, "GATEWAY_RUN_WRITERS": raw}).run_writers is expected
    with pytest.raises(SettingsError, match="GATEWAY_RUN_WRITERS"):
        GatewaySettings.from_env({**base, "GATEWAY_RUN_WRITERS": "maybe"})


async def test_writer_lingers_to_fill_a_batch(
    admin: Admin, services: ServiceBuses, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events trickling in are written in a few batches, not one write per event."""
    org = (await admin.org())["id"]
    writer = admin.plane.usage_writer
    sizes: list[int] = []
    real_write = writer.write

    async def counting_write(events: list[UsageEvent]) -> None:
        sizes.append(len(events))
        await real_write(events)

    monkeypatch.setattr(writer, "write", counting_write)
    for _ in range(40):
        await publish(services, [event(org)])
        await asyncio.sleep(0.005)
    await totals_become(admin, f"org_id={org}", 40)
    assert sum(sizes) == 40 and len(sizes) <= 10, sizes


async def test_a_batch_is_a_few_operations_whatever_its_size(admin: Admin) -> None:
    """Markers in one insert, buckets in one bulk write, markers applied in one update, pending
    ids dropped in one bulk write: MongoDB calls do not grow with the number of events, and a
    redelivery of events already applied costs two more (one find, one bulk write)."""
    org = (await admin.org())["id"]
    rows = await admin.plane.store.control("usage")
    calls: list[str] = []

    class Counting:
        def __getattr__(self, name: str) -> Any:
            attr = getattr(rows, name)
            if not callable(attr):
                return attr

            def call(*args: Any, **kwargs: Any) -> Any:
                calls.append(name)
                return attr(*args, **kwargs)

            return call

    class CountingStore:
        async def control(self, _name: str) -> Any:
            return Counting()

    rollup = UsageRollup(CountingStore())  # type: ignore[arg-type]
    events = [event(org, tool=f"t{i % 3}") for i in range(200)]
    await rollup.write(events)
    assert len(calls) == 4, calls
    calls.clear()
    await rollup.write(events)  # a full redelivery: nothing counted twice
    assert len(calls) == 3, calls
    result = await admin.call("GET", f"/admin/usage?org_id={org}&group_by=tool", expect=200)
    assert result["totals"]["calls"] == 200
    assert {g["tool"]: g["calls"] for g in result["groups"]} == {"t0": 67, "t1": 67, "t2": 66}


async def test_concurrent_writers_with_overlapping_batches_count_once(admin: Admin) -> None:
    org = (await admin.org())["id"]
    events = [event(org, tool=f"t{i % 4}") for i in range(60)]
    writers = [UsageRollup(admin.plane.store) for _ in range(3)]
    await asyncio.gather(
        writers[0].write(events[:40]), writers[1].write(events[20:]), writers[2].write(events[10:50])
    )
    result = await admin.call("GET", f"/admin/usage?org_id={org}", expect=200)
    assert result["totals"]["calls"] == 60


async def test_update_each_reports_refused_upserts(admin: Admin) -> None:
    rows = await admin.plane.store.control("usage")
    await rows.insert_one({"_id": "x|bulk", "org_id": "org-x", "pending": ["a"]})
    refused = await update_each(
        rows,
        [
            Update({"_id": "x|bulk", "pending": {"$nin": ["a"]}}, {"$inc": {"n": 1}}, upsert=True),
            Update({"_id": "y|bulk", "pending": {"$nin": ["b"]}}, {"$set": {"org_id": "org-x"}}, upsert=True),
        ],
    )
    assert refused == {0}
    assert await rows.find_one({"_id": "y|bulk"}) is not None
    await rows.delete_many({"_id": {"$in": ["x|bulk", "y|bulk"]}})


async def test_key_use_flush_is_bounded_and_chunked(admin: Admin, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flush publishes what was queued when it began, in chunks with a NATS flush after each;
    `last_used_at` of all keys in one call."""
    org = (await admin.org())["id"]
    key = await admin.key(org)
    principal = await admin.plane.authenticate(key["secret"])
    recorder = admin.plane.key_use
    await recorder.stop()  # no background flush in between: this test flushes by hand
    touches: list[int] = []
    real_touch = recorder.keys.touch

    async def counting_touch(used: Any) -> None:
        touches.append(len(used))
        await real_touch(used)

    monkeypatch.setattr(recorder.keys, "touch", counting_touch)
    monkeypatch.setattr(key_use, "PUBLISH_CHUNK", 7)
    flushes = 0
    real_flush = recorder.bus.nc.flush

    async def counting_flush(*args: Any, **kwargs: Any) -> None:
        nonlocal flushes
        flushes += 1
        # A key use arriving mid-flush waits for the next flush.
        await admin.plane.note_key_use(
            principal, action="tools/list", outcome="ok", request_id=f"late{flushes}"
        )
        await real_flush(*args, **kwargs)

    monkeypatch.setattr(recorder.bus.nc, "flush", counting_flush)
    for i in range(20):
        await admin.plane.note_key_use(principal, action="tools/list", outcome="ok", request_id=f"r{i}")
    before = recorder.published
    await recorder.flush()
    assert recorder.published - before == 20 and flushes == 3  # 7 + 7 + 6
    assert recorder.queued == 3 and touches == [1]
    monkeypatch.undo()
    await recorder.flush()
    deadline = time.monotonic() + 5
    while True:
        items = (
            await admin.call("GET", f"/admin/audit?org_id={org}&actor={key['id']}&limit=100", expect=200)
        )["items"]
        if len(items) == 23 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert len(items) == 23
    keys = (await admin.call("GET", f"/admin/orgs/{org}/keys", expect=200))["items"]
    assert keys[0]["last_used_at"] is not None


async def test_a_failed_chunk_is_requeued_in_order(admin: Admin, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = admin.plane.key_use
    await recorder.stop()
    recorder._events.clear()
    for i in range(5):
        recorder.note("org-x", "key-x", action="a", outcome="ok", request_id=f"r{i}", ts=time.time())
    sent: list[str] = []

    async def half_then_fail(_bus: Any, e: Any) -> None:
        if len(sent) == 3:
            raise ConnectionError("outbound buffer full")
        sent.append(e.request_id)

    monkeypatch.setattr(audit, "publish_nowait", half_then_fail)
    with pytest.raises(RuntimeError, match="2 of 5"):
        await recorder.flush()
    assert [e.request_id for e in recorder._events] == [f"r{i}" for i in range(5)]
    recorder._events.clear()


def test_last_used_never_moves_backwards_in_memory() -> None:
    recorder = key_use.KeyUseRecorder(None, None)  # type: ignore[arg-type]
    recorder.note("org-x", "key-x", action="a", outcome="ok", request_id="r1", ts=2000.0)
    recorder.note("org-x", "key-x", action="a", outcome="ok", request_id="r2", ts=1000.0)
    assert recorder._last_used["key-x"] == datetime.fromtimestamp(2000.0, UTC)
