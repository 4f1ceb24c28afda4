"""A durable writer's stop ends a writer stalled past the wait for its batch in hand."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client

from mcpmesh.bus import Bus
from mcpmesh.gateway.control import durable
from mcpmesh.gateway.control.durable import DurableWriter

WAIT_S = 30.0  # a bound on the stop, not a duration asserted


async def test_stop_ends_a_stalled_writer_that_lost_a_cancel(monkeypatch: pytest.MonkeyPatch) -> None:
    """On Python 3.11 a cancel racing a result in nats' fetch (`asyncio.wait_for`) is lost: the
    writer is cancelled until it ends (once, the stop waited as long as the stall lasted)."""
    monkeypatch.setattr(durable, "STOP_BATCH_S", 0.0)  # the writer has stalled past it already

    async def write(_events: list[dict[str, object]]) -> None:
        raise AssertionError("nothing is fetched here")

    writer = DurableWriter(
        Bus(Client()), stream="USAGE", durable="test", filter_subject="usage.>", event_type=dict, write=write
    )
    cancels = 0

    async def stalled() -> None:
        nonlocal cancels
        while True:
            try:
                await asyncio.sleep(3600)  # a write to a store that does not answer
            except asyncio.CancelledError:
                cancels += 1
                if cancels > 1:
                    raise  # the second cancel gets through

    task = writer._task = asyncio.get_running_loop().create_task(stalled())
    await asyncio.sleep(0)
    await asyncio.wait_for(writer.stop(), WAIT_S)
    assert task.cancelled() and cancels == 2 and not writer.running
