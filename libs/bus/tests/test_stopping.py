"""cancel_until_done: a loop that lost a cancel is cancelled again; one that never ends is left, said."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from mcpmesh.bus import cancel_until_done
from mcpmesh.bus.stopping import raising_lost_cancels


async def test_a_loop_that_swallowed_the_first_cancel_is_cancelled_until_done() -> None:
    cancels = 0

    async def stubborn() -> None:
        nonlocal cancels
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancels += 1
                if cancels > 1:
                    raise  # the second cancel gets through

    task = asyncio.get_running_loop().create_task(stubborn())
    await asyncio.sleep(0)  # in its sleep
    await asyncio.wait_for(cancel_until_done([task, None], what="test loop"), timeout=30)
    assert task.cancelled() and cancels == 2


async def test_a_cancel_lost_in_wait_for_as_on_python_3_11_is_repeated() -> None:
    """The real mechanism: the awaited future completes in the loop iteration of the cancel
    (a reply racing the stop), and 3.11's `wait_for` returns its result instead of raising."""
    loop = asyncio.get_running_loop()
    waiting: list[asyncio.Future[None]] = []
    rounds = 0

    async def receive_forever() -> None:
        nonlocal rounds
        while True:
            rounds += 1
            waiting.append(loop.create_future())
            await asyncio.wait_for(waiting[-1], timeout=3600)

    task = loop.create_task(receive_forever())
    await asyncio.sleep(0)  # waiting for its first "reply"
    waiting[-1].set_result(None)  # the reply arrives, and in the same iteration the stop cancels
    await asyncio.wait_for(cancel_until_done([task], what="receiver"), timeout=30)
    assert task.cancelled() and rounds >= 2  # it did go round again after the first cancel


async def test_a_task_that_never_ends_is_left_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    stopped = asyncio.Event()

    async def deaf() -> None:
        while not stopped.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await stopped.wait()

    task = asyncio.get_running_loop().create_task(deaf(), name="deaf-loop")
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_until_done([task], what="deaf", timeout_s=0.3), timeout=30)
    assert not task.done()
    left = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(left) == 1 and "left behind" in left[0] and "deaf-loop" in left[0]
    stopped.set()
    await asyncio.wait_for(task, timeout=30)


async def test_a_task_that_had_failed_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    async def broken() -> None:
        raise RuntimeError("the loop broke")

    task = asyncio.get_running_loop().create_task(broken())
    await asyncio.wait([task])
    await cancel_until_done([task], what="broken loop")
    failed = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(failed) == 1 and "the loop broke" in failed[0] and "broken loop" in failed[0]


async def test_a_cancel_lost_in_wait_for_is_raised_after_the_request() -> None:
    """A bus request waits with `wait_for`; a reply racing the cancel must not let the cancelled
    caller go on (a job told to stop mid-call would ask for its next turn)."""
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[str] = loop.create_future()
    went_on: list[str] = []

    async def caller() -> None:
        with raising_lost_cancels():
            answer = await asyncio.wait_for(reply, timeout=3600)
        went_on.append(answer)

    task = loop.create_task(caller())
    await asyncio.sleep(0)  # waiting for the reply
    reply.set_result("answer")  # the reply arrives, and in the same iteration the caller is cancelled
    task.cancel()
    await asyncio.wait([task], timeout=30)
    assert task.cancelled() and went_on == []


async def test_a_request_without_a_cancel_goes_on_and_an_earlier_handled_cancel_does_not_count() -> None:
    async def request() -> str:
        with raising_lost_cancels():
            return await asyncio.wait_for(asyncio.sleep(0, "answer"), timeout=30)

    async def caller() -> list[str]:
        with contextlib.suppress(asyncio.CancelledError):  # handled: clean-up goes on, with requests
            await asyncio.sleep(3600)
        return [await request(), await request()]

    task = asyncio.get_running_loop().create_task(caller())
    await asyncio.sleep(0)
    task.cancel()
    assert await asyncio.wait_for(task, timeout=30) == ["answer", "answer"]
