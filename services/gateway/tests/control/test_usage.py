"""Usage: events from JetStream rolled up exactly once, across writer restarts and redeliveries."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from mcpmesh.gateway.control.usage import UsageRollup, bucket_id, event_matches_subject
from mcpmesh.proto.events import UsageEvent
from mcpmesh.proto.subjects import usage_subject

from .conftest import Admin, ServiceBuses


def event(org_id: str, **over: Any) -> UsageEvent:
    fields: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "ts": time.time(),
        "org_id": org_id,
        "key_id": "key-aaaaaaaaaaaa",
        "service": "context",
        "method": "tools/call",
        "tool": "create",
        "request_id": uuid.uuid4().hex,
        "status": "ok",
        "latency_ms": 2.0,
        "bytes_in": 10,
        "bytes_out": 100,
        **over,
    }
    return UsageEvent(**fields)


async def publish(services: ServiceBuses, events: list[UsageEvent], *, msg_id_suffix: str = "") -> None:
    """Into the USAGE stream, each event by the service it names (as the kit publishes them)."""
    for e in events:
        bus = await services.bus(e.service)
        await bus.js.publish(
            usage_subject(e.org_id, e.service),
            msgspec.json.encode(e),
            headers={"Nats-Msg-Id": e.event_id + msg_id_suffix},
        )


async def totals_become(admin: Admin, query: str, calls: int, wait_s: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + wait_s
    while True:
        result: dict[str, Any] = await admin.call("GET", f"/admin/usage?{query}", expect=200)
        if result["totals"]["calls"] == calls or time.monotonic() > deadline:
            assert result["totals"]["calls"] == calls, result["totals"]
            return result
        await asyncio.sleep(0.05)


async def test_events_roll_up_by_key_service_tool(admin: Admin, services: ServiceBuses) -> None:
    org = (await admin.org())["id"]
    events = [
        event(org, tool="create", llm_prompt_tokens=5, llm_completion_tokens=7, llm_cost_usd=0.01),
        event(org, tool="create", status="timeout", latency_ms=4.0),
        event(org, tool="search", key_id="key-bbbbbbbbbbbb"),
        event(org, service="llm", tool="complete", bytes_in=1, bytes_out=2),
        event(org, method="tools/list", tool=None),
    ]
    await publish(services, events)
    result = await totals_become(admin, f"org_id={org}&group_by=service,tool", 5)
    totals = result["totals"]
    assert totals["errors"] == 1
    assert totals["bytes_in"] == 10 * 4 + 1 and totals["bytes_out"] == 100 * 4 + 2
    assert totals["llm_prompt_tokens"] == 5 and totals["llm_completion_tokens"] == 7
    assert totals["llm_cost_usd"] == pytest.approx(0.01)
    assert totals["latency_ms_avg"] == pytest.approx((2.0 * 4 + 4.0) / 5)
    groups = {(g["service"], g["tool"]): g["calls"] for g in result["groups"]}
    assert groups == {
        ("context", "create"): 2,
        ("context", "search"): 1,
        ("llm", "complete"): 1,
        ("context", None): 1,
    }
    by_key = await admin.call("GET", f"/admin/usage?org_id={org}&key_id=key-bbbbbbbbbbbb", expect=200)
    assert by_key["totals"]["calls"] == 1
    only_llm = await admin.call("GET", f"/admin/usage?org_id={org}&service=llm&group_by=hour", expect=200)
    assert only_llm["totals"]["calls"] == 1 and len(only_llm["groups"]) == 1
    assert await admin.plane.monthly_tool_calls(org) == 4
    future = await admin.call("GET", f"/admin/usage?org_id={org}&since=2999-01-01T00:00:00Z", expect=200)
    assert future["totals"]["calls"] == 0
    await admin.call("GET", "/admin/usage?group_by=colour", expect=400)
    await admin.call("GET", "/admin/usage?org_id=bad", expect=400)


async def test_llm_calls_roll_up_by_model_and_payer(admin: Admin, services: ServiceBuses) -> None:
    org = (await admin.org())["id"]
    llm = {"service": "llm", "tool": "chat"}
    events = [
        event(org, **llm, llm_model="sysa/big", llm_billed_to="system", llm_prompt_tokens=10,
              llm_completion_tokens=5, llm_cached_tokens=4, llm_cost_usd=0.5),
        event(org, **llm, llm_model="sysa/big", llm_billed_to="system", llm_prompt_tokens=1,
              llm_completion_tokens=2, llm_cached_tokens=0, llm_cost_usd=0.25),
        event(org, **llm, llm_model="own/small", llm_billed_to="org", llm_prompt_tokens=3,
              llm_completion_tokens=3, llm_cached_tokens=1, llm_cost_usd=0.125),
        event(org, **llm, llm_model="bad|model name", llm_billed_to="nobody", llm_prompt_tokens=1),
        event(org),  # not an LLM call
    ]  # fmt: skip
    await publish(services, events)
    result = await totals_become(admin, f"org_id={org}&group_by=llm_model,llm_billed_to", 5)
    assert result["totals"]["llm_cached_tokens"] == 5
    groups = {
        (g["llm_model"], g["llm_billed_to"]): (
            g["calls"], g["llm_prompt_tokens"], g["llm_completion_tokens"], g["llm_cached_tokens"],
            g["llm_cost_usd"])
        for g in result["groups"]
    }  # fmt: skip
    assert groups == {
        ("sysa/big", "system"): (2, 11, 7, 4, 0.75),
        ("own/small", "org"): (1, 3, 3, 1, 0.125),
        ("other", None): (1, 1, 0, 0, 0.0),
        (None, None): (1, 0, 0, 0, 0.0),
    }
    billed = await admin.call("GET", f"/admin/usage?org_id={org}&llm_billed_to=system", expect=200)
    assert (billed["totals"]["calls"], billed["totals"]["llm_cost_usd"]) == (2, 0.75)
    one = await admin.call("GET", f"/admin/usage?org_id={org}&llm_model=own/small", expect=200)
    assert one["totals"]["llm_prompt_tokens"] == 3


async def test_an_event_claimed_into_a_bucket_of_another_layout_is_taken_over_there(admin: Admin) -> None:
    """A writer of an older version (buckets without the model) claimed and counted an LLM event,
    then died before finishing it: the redelivery finishes it in the claimer's bucket, counted once."""
    org = (await admin.org())["id"]
    rows = await admin.plane.store.control("usage")
    e = event(org, service="llm", tool="chat", llm_model="sysa/big", llm_billed_to="system")
    old_bucket = bucket_id(e).rsplit("|", 2)[0]
    await rows.insert_one(
        {"_id": f"e|{e.event_id}", "kind": "event", "org_id": org, "bucket": old_bucket,
         "state": "pending", "epoch": 0}
    )  # fmt: skip
    counted = UsageRollup._update(old_bucket, [e])
    await rows.update_one(counted.filter, counted.update, upsert=True)
    await UsageRollup(admin.plane.store).write([e])
    result = await admin.call("GET", f"/admin/usage?org_id={org}", expect=200)
    assert result["totals"]["calls"] == 1
    assert await rows.count_documents({"org_id": org, "kind": "hour", "pending.0": {"$exists": True}}) == 0


async def test_nothing_lost_or_doubled_across_a_writer_restart(admin: Admin, services: ServiceBuses) -> None:
    org = (await admin.org())["id"]
    await publish(services, [event(org) for _ in range(20)])
    await totals_become(admin, f"org_id={org}", 20)
    await admin.plane.usage_writer.stop()
    await publish(services, [event(org) for _ in range(30)])
    await asyncio.sleep(0.3)
    stalled = await admin.call("GET", f"/admin/usage?org_id={org}", expect=200)
    assert stalled["totals"]["calls"] == 20  # the writer is really stopped
    await admin.plane.usage_writer.start()
    await totals_become(admin, f"org_id={org}", 50)
    await asyncio.sleep(0.3)
    await totals_become(admin, f"org_id={org}", 50, wait_s=0)


async def test_a_redelivered_event_counts_once(admin: Admin, services: ServiceBuses) -> None:
    org = (await admin.org())["id"]
    events = [event(org) for _ in range(5)]
    await publish(services, events)
    await totals_become(admin, f"org_id={org}", 5)
    # The same events again under other message ids: JetStream stores them twice, the writer dedupes.
    await publish(services, events, msg_id_suffix="-again")
    await publish(services, [event(org)])
    await totals_become(admin, f"org_id={org}", 6)
    await asyncio.sleep(0.3)
    await totals_become(admin, f"org_id={org}", 6, wait_s=0)


class Crash(Exception):
    pass


@pytest.mark.parametrize("when", ["before_bucket", "after_bucket", "before_unpending"])
async def test_a_crash_at_any_step_then_retry_counts_once(
    admin: Admin, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    org = (await admin.org())["id"]
    rollup = UsageRollup(admin.plane.store)
    events = [event(org) for _ in range(4)] + [event(org, tool="other")]
    real_apply = UsageRollup._apply_buckets
    rows = await admin.plane.store.control("usage")
    real_update_many = type(rows).update_many

    async def crashing_apply(self: UsageRollup, rows: Any, by_bucket: dict[str, list[UsageEvent]]) -> None:
        if when == "before_bucket":
            raise Crash
        await real_apply(self, rows, by_bucket)
        if when == "after_bucket":
            raise Crash

    async def crashing_update_many(self: Any, *args: Any, **kwargs: Any) -> Any:
        await real_update_many(self, *args, **kwargs)
        raise Crash

    if when == "before_unpending":
        monkeypatch.setattr(type(rows), "update_many", crashing_update_many)
    else:
        monkeypatch.setattr(UsageRollup, "_apply_buckets", crashing_apply)
    with pytest.raises(Crash):
        await rollup.write(events)
    monkeypatch.undo()
    await rollup.write(events)  # the redelivery
    await rollup.write(events[:2])  # and another one, late
    result = await admin.call("GET", f"/admin/usage?org_id={org}&group_by=tool", expect=200)
    assert result["totals"]["calls"] == 5
    assert {g["tool"]: g["calls"] for g in result["groups"]} == {"create": 4, "other": 1}
    assert await rows.count_documents({"org_id": org, "kind": "hour", "pending.0": {"$exists": True}}) == 0


async def test_an_event_published_for_another_org_is_dropped(admin: Admin, services: ServiceBuses) -> None:
    org = (await admin.org())["id"]
    other = (await admin.org("Other"))["id"]
    forged = event(other)
    context = await services.bus("context")
    await context.js.publish(usage_subject(org, "context"), msgspec.json.encode(forged))
    await publish(services, [event(org)])
    await totals_become(admin, f"org_id={org}", 1)
    await asyncio.sleep(0.2)
    assert (await admin.call("GET", f"/admin/usage?org_id={other}", expect=200))["totals"]["calls"] == 0


async def test_racing_writers_apply_each_event_once(admin: Admin) -> None:
    """Writers holding the same events at once (an ack deadline passed mid-batch), on the
    shared server where operations really interleave: each event counts once, none stays pending."""
    org = (await admin.org())["id"]
    rows = await admin.plane.store.control("usage")
    events = [event(org, tool=f"t{i % 3}") for i in range(30)]
    for _ in range(3):
        writers = [UsageRollup(admin.plane.store) for _ in range(4)]
        await asyncio.gather(*(w.write(events[i::2] + events) for i, w in enumerate(writers)))
    result = await admin.call("GET", f"/admin/usage?org_id={org}&group_by=tool", expect=200)
    assert {g["tool"]: g["calls"] for g in result["groups"]} == {"t0": 10, "t1": 10, "t2": 10}
    assert await rows.count_documents({"org_id": org, "kind": "hour", "pending.0": {"$exists": True}}) == 0
    assert await rows.count_documents({"org_id": org, "kind": "event", "state": "pending"}) == 0


class Gate:
    """Holds a writer at one step until released, to play out a race step by step."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.go = asyncio.Event()

    async def hold(self) -> None:
        self.reached.set()
        await self.go.wait()


@pytest.mark.parametrize("stall", ["before_count", "after_count", "before_unpend"])
async def test_a_writer_overtaken_by_a_redelivery_never_counts_twice(
    admin: Admin, monkeypatch: pytest.MonkeyPatch, stall: str
) -> None:
    """Writer A claims an event and stalls; the event is redelivered to writer B, which takes it
    over, counts and finishes it; then A wakes up and carries on. Counted once, whatever the step
    A stalled at (the check-then-count of a redelivered event used to count it twice here)."""
    org = (await admin.org())["id"]
    rows = await admin.plane.store.control("usage")
    slow, other = UsageRollup(admin.plane.store), UsageRollup(admin.plane.store)
    gate = Gate()
    real_apply, real_unpend = UsageRollup._apply_buckets, UsageRollup._unpend

    async def stalled_apply(rows: Any, by_bucket: dict[str, list[UsageEvent]]) -> None:
        if stall == "before_count":
            await gate.hold()
        await real_apply(slow, rows, by_bucket)
        if stall == "after_count":
            await gate.hold()

    async def stalled_unpend(rows: Any, events: list[UsageEvent], bucket: str | None = None) -> None:
        if stall == "before_unpend" and events:
            await gate.hold()
        await real_unpend(rows, events, bucket)

    monkeypatch.setattr(slow, "_apply_buckets", stalled_apply)
    monkeypatch.setattr(slow, "_unpend", stalled_unpend)
    events = [event(org), event(org, tool="other")]
    first = asyncio.create_task(slow.write(events))
    await asyncio.wait_for(gate.reached.wait(), 10)
    await other.write(events)  # the redelivery, served in full while A is stalled
    gate.go.set()
    await asyncio.wait_for(first, 10)
    await other.write(events)  # and a late one
    result = await admin.call("GET", f"/admin/usage?org_id={org}&group_by=tool", expect=200)
    assert {g["tool"]: g["calls"] for g in result["groups"]} == {"create": 1, "other": 1}
    assert await rows.count_documents({"org_id": org, "kind": "hour", "pending.0": {"$exists": True}}) == 0
    assert await rows.count_documents({"org_id": org, "kind": "event", "state": "pending"}) == 0


async def test_usage_markers_expire_by_a_ttl_index(admin: Admin) -> None:
    rows = await admin.plane.store.control("usage")
    info = await rows.index_information()
    assert any(
        spec["key"] == [("expire_at", 1)] and spec.get("expireAfterSeconds") == 0 for spec in info.values()
    )
    await admin.plane.usage.write([event((await admin.org())["id"])])
    marker = await rows.find_one({"kind": "event"}, {"expire_at": 1})
    assert marker is not None and marker["expire_at"] > datetime.now(UTC)


def test_an_event_id_that_is_not_plain_is_dropped() -> None:
    """Event ids become field names of bucket fences: only plain ones are accepted."""
    ok = event("org-acme")
    assert event_matches_subject(usage_subject("org-acme", "context"), ok)
    for bad in ("a.b", "$x", "", "x" * 65, "a b"):
        forged = msgspec.structs.replace(ok, event_id=bad)
        assert not event_matches_subject(usage_subject("org-acme", "context"), forged)
