"""Admission: the gate's bounds and fair shares, and the kit refusing past them on a real bus."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from mcpmesh.bus import Deadline
from mcpmesh.bus.mcp import request_body
from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.proto.errors import JSONRPC_CODES, ErrorCode
from mcpmesh.proto.headers import DEADLINE
from mcpmesh.service import MeshService, ServiceSettings
from mcpmesh.service.admission import Admission, AdmissionLimits, Overloaded
from mcpmesh.service.run import request_deadline
from mcpmesh.service.testing import LocalHarness, ServiceHarness

# -- the gate ------------------------------------------------------------------------------------


async def test_calls_past_inflight_and_queue_are_refused_at_once() -> None:
    gate = Admission(AdmissionLimits(max_inflight=2, max_queued=1, org_share=1), name="the test")
    await gate.enter("org-a")
    await gate.enter("org-a")
    waiting = asyncio.create_task(gate.enter("org-a"))
    await asyncio.sleep(0)
    assert (gate.inflight, gate.queued) == (2, 1)
    with pytest.raises(Overloaded) as info:
        await gate.enter("org-a")
    assert info.value.reason == "capacity"
    assert "the test is at capacity (2 calls in progress, 1 waiting)" in info.value.message
    gate.leave("org-a")
    await waiting  # the queued call got the freed slot
    assert (gate.inflight, gate.queued, gate.refused["capacity"]) == (2, 0, 1)
    gate.leave("org-a")
    gate.leave("org-a")
    assert (gate.inflight, gate.orgs) == (0, 0)  # nothing kept once the calls are done


async def test_a_queued_call_is_refused_when_its_wait_is_over() -> None:
    gate = Admission(AdmissionLimits(max_inflight=1, max_queued=4, queue_wait_s=0.05), name="the test")
    await gate.enter("org-a")
    with pytest.raises(Overloaded) as info:
        await gate.enter("org-b")
    assert info.value.reason == "queue_wait"
    assert (gate.queued, gate.orgs) == (0, 1)
    gate.leave("org-a")
    assert gate.orgs == 0


async def test_one_org_gets_its_share_and_another_org_is_served_past_its_flood() -> None:
    gate = Admission(AdmissionLimits(max_inflight=4, max_queued=4, org_share=0.5), name="the test")
    await gate.enter("org-flood")
    await gate.enter("org-flood")
    flood_waiting = [asyncio.create_task(gate.enter("org-flood")) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(Overloaded) as info:  # its share of the queue is full too
        await gate.enter("org-flood")
    assert info.value.reason == "org_share"
    assert "its share is 2 at a time, 2 waiting" in info.value.message
    # Slots are free, but not for the flooding org: the quiet org takes one at once.
    assert gate.try_enter("org-quiet")
    assert (gate.inflight, gate.queued) == (3, 2)
    gate.leave("org-quiet")
    gate.leave("org-flood")
    await asyncio.sleep(0)
    assert sum(t.done() for t in flood_waiting) == 1  # one flood call in, still at its share of 2
    gate.leave("org-flood")
    await asyncio.gather(*flood_waiting)
    assert (gate.inflight, gate.queued) == (2, 0)


async def test_without_a_queue_an_org_past_its_share_is_told_so() -> None:
    gate = Admission(AdmissionLimits(max_inflight=2, max_queued=0, org_share=0.5), name="the test")
    await gate.enter("org-a")
    with pytest.raises(Overloaded) as info:  # a slot is free, but not for org-a
        await gate.enter("org-a")
    assert info.value.reason == "org_share"
    await gate.enter("org-b")
    with pytest.raises(Overloaded) as info:
        await gate.enter("org-c")
    assert info.value.reason == "capacity"
    assert gate.refused == {"capacity": 1, "org_share": 1, "queue_wait": 0}


async def test_queued_orgs_take_turns() -> None:
    gate = Admission(AdmissionLimits(max_inflight=1, max_queued=10, org_share=1), name="the test")
    await gate.enter("org-a")
    order: list[str] = []

    async def call(org: str) -> None:
        await gate.enter(org)
        order.append(org)

    tasks = [asyncio.create_task(call(org)) for org in ["org-a"] * 3 + ["org-b"] * 2]
    await asyncio.sleep(0)
    for _ in range(5):
        gate.leave(order[-1] if order else "org-a")
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert order == ["org-a", "org-b", "org-a", "org-b", "org-a"]


async def test_a_cancelled_waiter_leaves_no_trace() -> None:
    gate = Admission(AdmissionLimits(max_inflight=1, max_queued=2), name="the test")
    await gate.enter("org-a")
    waiting = asyncio.create_task(gate.enter("org-b"))
    await asyncio.sleep(0)
    waiting.cancel()
    gate.leave("org-a")  # the cancelled waiter must not be handed the slot
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert (gate.inflight, gate.queued, gate.orgs) == (0, 0, 0)
    assert gate.try_enter("org-c")


def test_limits_from_the_environment() -> None:
    base = AdmissionLimits()
    env = {"MCPMESH_MAX_INFLIGHT": "8", "MCPMESH_MAX_QUEUED": "0", "MCPMESH_QUEUE_WAIT_S": "0.5"}
    limits = AdmissionLimits.from_env(base, env)
    assert (limits.max_inflight, limits.max_queued, limits.queue_wait_s, limits.org_share) == (8, 0, 0.5, 0.5)
    assert (limits.org_inflight, limits.org_queued) == (4, 0)
    with pytest.raises(ValueError, match="MCPMESH_MAX_INFLIGHT='many' is not an integer"):
        AdmissionLimits.from_env(base, {"MCPMESH_MAX_INFLIGHT": "many"})
    with pytest.raises(ValueError, match=r"MCPMESH_ORG_SHARE=1\.5 must be more than 0 and at most 1"):
        AdmissionLimits.from_env(base, {"MCPMESH_ORG_SHARE": "1.5"})


# -- the kit on a real bus -------------------------------------------------------------------------


@pytest.fixture
async def held() -> AsyncIterator[tuple[MeshService, asyncio.Event, list[str]]]:
    svc = MeshService("echo")
    release = asyncio.Event()
    entered: list[str] = []

    @svc.tool(access="read")
    async def hold(tag: str) -> str:
        """Wait until the test releases every held call."""
        entered.append(tag)
        await release.wait()
        return f"done {tag}"

    yield svc, release, entered
    release.set()


def limited(**limits: Any) -> ServiceSettings:
    return dataclasses.replace(ServiceSettings(), admission=AdmissionLimits(**limits))


def ok(reply: bytes) -> bool:
    result = msgspec.json.decode(reply).get("result")
    return isinstance(result, dict) and not result.get("isError")


async def until(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_the_kit_refuses_past_its_inflight_limit_with_unavailable(
    nats_server: LocalNatsServer, held: tuple[MeshService, asyncio.Event, list[str]]
) -> None:
    svc, release, entered = held
    settings = limited(max_inflight=2, max_queued=0, org_share=1)
    async with ServiceHarness(svc, nats_server, settings=settings) as harness:
        stamp = harness.stamp("org-acme")

        def hold(tag: str) -> bytes:
            return request_body("tools/call", {"name": "hold", "arguments": {"tag": tag}}, request_id=tag)

        first = [asyncio.create_task(harness.raw("org-acme", hold(t), stamp=stamp)) for t in ("a", "b")]
        await until(lambda: len(entered) == 2)
        refused = msgspec.json.decode(await harness.raw("org-acme", hold("c"), stamp=stamp))
        assert refused["id"] == "c"
        error = refused["error"]
        assert error["code"] == JSONRPC_CODES[ErrorCode.UNAVAILABLE]
        assert error["data"] == {
            "code": "unavailable",
            "message": "service 'echo' is at capacity (2 calls in progress, 0 waiting): retry in a second",
            "retryable": True,
            "details": {},
        }
        assert entered == ["a", "b"]  # the refused call never ran
        metrics = svc.metrics.registry
        assert metrics.get_sample_value("mcpmesh_admission_refused_total", {"reason": "capacity"}) == 1
        assert metrics.get_sample_value("mcpmesh_admission_inflight") == 2
        release.set()
        for task in first:
            assert ok(await task)
        assert ok(await harness.raw("org-acme", hold("d"), stamp=stamp))  # capacity is back
        assert harness.server is not None
        await until(lambda: not harness.server.inflight)  # type: ignore[union-attr]
        assert (harness.server.gate.inflight, harness.server.gate.orgs) == (0, 0)


async def test_the_kit_queues_within_bounds_and_keeps_an_orgs_share(
    nats_server: LocalNatsServer, held: tuple[MeshService, asyncio.Event, list[str]]
) -> None:
    svc, release, entered = held
    settings = limited(max_inflight=2, max_queued=2, org_share=0.5, queue_wait_s=30)
    async with ServiceHarness(svc, nats_server, settings=settings) as harness:

        def call(org: str, tag: str) -> asyncio.Task[bytes]:
            body = request_body("tools/call", {"name": "hold", "arguments": {"tag": tag}}, request_id=tag)
            return asyncio.create_task(harness.raw(org, body, stamp=harness.stamp(org)))

        a1 = call("org-acme", "a1")
        await until(lambda: entered == ["a1"])
        a2 = call("org-acme", "a2")  # over acme's share (1 of 2): queued although a slot is free
        await until(lambda: harness.server is not None and harness.server.gate.queued == 1)
        refused = msgspec.json.decode(await call("org-acme", "a3"))  # acme's queue share is full
        assert refused["error"]["data"]["code"] == "unavailable"
        assert "busy with this organization's other calls" in refused["error"]["message"]
        b1 = call("org-globex", "b1")  # another org is served at once
        await until(lambda: entered == ["a1", "b1"])
        release.set()
        for task in (a1, a2, b1):
            assert ok(await task)
        assert entered == ["a1", "b1", "a2"]


# -- how long a queued call may wait: its own deadline ----------------------------------------------


def budgeted() -> tuple[MeshService, asyncio.Event]:
    svc = MeshService("echo")
    release = asyncio.Event()

    @svc.tool(access="read", budget_s=600)
    async def long(tag: str) -> str:
        """A ten-minute tool: holds its slot until the test releases it."""
        await release.wait()
        return f"done {tag}"

    @svc.tool(access="read", budget_s=0.2)
    async def quick() -> str:
        return "quick"

    return svc, release


def test_a_requests_deadline_is_its_tools_budget_within_the_callers_and_the_cap() -> None:
    svc, _release = budgeted()
    ten_minutes = {DEADLINE: Deadline.after(600).header()}

    def left(body: bytes, headers: dict[str, str] | None = ten_minutes) -> float:
        return request_deadline(svc, body, headers).remaining()

    call_long = request_body("tools/call", {"name": "long", "arguments": {"tag": "x"}})
    call_quick = request_body("tools/call", {"name": "quick", "arguments": {}})
    assert left(call_long) > svc.settings.call_timeout_s  # not the 30 s of a request without a budget
    assert left(call_quick) <= 0.2
    assert left(request_body("tools/list")) <= svc.settings.call_timeout_s
    assert left(call_long, {DEADLINE: Deadline.after(5).header()}) <= 5  # the caller's deadline first
    assert left(b"not json", None) <= svc.settings.call_timeout_s
    svc.settings = dataclasses.replace(svc.settings, max_call_s=60)
    assert left(call_long) <= 60  # the operator's cap


async def test_a_queued_call_waits_as_long_as_its_own_deadline_allows() -> None:
    """Queued behind a held call, with a queue wait of minutes: the 0.2 s tool is refused within
    its budget, while the ten-minute tool queued before it, past the 0.2 s a request without a
    budget gets here, still waits and is served once the slot is free."""
    svc, release = budgeted()
    settings = dataclasses.replace(
        limited(max_inflight=1, max_queued=4, org_share=1, queue_wait_s=600), call_timeout_s=0.2
    )
    async with LocalHarness(svc, settings=settings) as local, asyncio.timeout(60):
        stamp = local.stamp("org-acme")

        def call(tool: str, tag: str) -> asyncio.Task[bytes]:
            args = {"tag": tag} if tool == "long" else {}
            body = request_body("tools/call", {"name": tool, "arguments": args}, request_id=tag)
            return asyncio.create_task(local.raw("org-acme", body, stamp=stamp, deadline_s=600))

        holder = call("long", "holder")
        await until(lambda: local.gate.inflight == 1)
        queued_long = call("long", "queued")
        await until(lambda: local.gate.queued == 1)
        refused = msgspec.json.decode(await call("quick", "q"))
        assert refused["error"]["data"]["code"] == "unavailable"
        assert local.gate.refused["queue_wait"] == 1
        assert local.gate.queued == 1  # the long tool is still waiting
        release.set()
        assert ok(await holder) and ok(await queued_long)
