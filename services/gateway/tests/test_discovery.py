"""Where a request goes, from what discovery and the health rounds know of each replica."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client

from mcpmesh.bus import Bus
from mcpmesh.gateway.discovery import Discovery, NoHealthyReplica, Replica, ServiceView


def discovery_with(*replicas: Replica) -> Discovery:
    discovery = Discovery(Bus(Client()), health_interval_s=1.0)
    discovery.views["logs"] = ServiceView("logs", replicas={r.id: r for r in replicas})
    return discovery


def replica(replica_id: str, *, misses: int = 0, routable: bool = True) -> Replica:
    return Replica(replica_id, "0.1.0", routable, seen_at=0.0, misses=misses)


def test_all_healthy_goes_to_the_shared_subject_and_nats_picks() -> None:
    assert discovery_with(replica("a"), replica("b", misses=1)).target("logs") is None
    assert Discovery(Bus(Client())).target("unknown") is None  # nothing known: NATS decides


def test_an_unhealthy_replica_gets_no_new_requests() -> None:
    discovery = discovery_with(replica("a", misses=2), replica("b"), replica("c"))
    assert {discovery.target("logs") for _ in range(50)} == {"b", "c"}
    # A healthy replica that cannot be addressed alone (an older kit): the shared subject.
    assert discovery_with(replica("a", misses=2), replica("b", routable=False)).target("logs") is None


def test_no_healthy_replica_left_is_refused_and_says_when_to_retry() -> None:
    discovery = discovery_with(replica("a", misses=2), replica("b", misses=5))
    with pytest.raises(NoHealthyReplica):
        discovery.target("logs")
    assert discovery.retry_after_s == 2
    assert discovery.has("logs")  # still a known service: a 503, not "unknown"


def test_a_replica_gone_from_the_bus_is_dropped() -> None:
    discovery = discovery_with(replica("a", misses=2), replica("b"))
    discovery.drop("logs", "b")
    with pytest.raises(NoHealthyReplica):
        discovery.target("logs")
    discovery.drop("logs", "a")
    assert not discovery.has("logs") and discovery.target("logs") is None


async def test_stop_ends_a_loop_that_swallowed_a_cancel() -> None:
    """As nats' next_msg does on Python 3.11 when a reply races the cancel (asyncio.wait_for)."""
    discovery = Discovery(Bus(Client()))
    rounds = 0

    async def stubborn() -> None:
        nonlocal rounds
        while True:
            rounds += 1
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if rounds > 3:
                    raise  # the second cancel gets through

    discovery._tasks = [asyncio.get_running_loop().create_task(stubborn())]
    await asyncio.sleep(0.005)
    await asyncio.wait_for(discovery.stop(), timeout=5)
    assert discovery._tasks == [] and rounds > 1
