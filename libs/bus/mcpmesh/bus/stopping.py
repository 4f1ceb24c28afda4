"""Stopping background tasks: cancel them until they are done, within a bound.

Cancelling a task once and awaiting it can hang on Python 3.11: `asyncio.wait_for` (nats-py's
`next_msg`, `request`, `fetch`, `flush`...) returns the result of an inner future that completed
in the same loop iteration as the cancel, and the cancel is lost. A `while True` loop then runs
on, and `await task` never returns (a gateway's stop hung this way in CI). So a stop cancels
again while the task runs, and after `timeout_s` says which tasks it left running rather than
hang. Each repeated cancel interrupts whatever the task is doing, so this is for loops whose
cancellation needs no clean-up of its own. Where the cancel is lost in the first place — a bus
request — `raising_lost_cancels` gives it back to the task that was cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator
from typing import Any, Final

from mcpmesh.telemetry.logs import get_logger

__all__ = ["RECANCEL_S", "STOP_TIMEOUT_S", "cancel_until_done", "raising_lost_cancels"]

log = get_logger("mcpmesh.bus.stopping")

#: How long a cancelled task may run on before it is cancelled again.
RECANCEL_S: Final = 0.1
#: How long a stop keeps cancelling: a task still running then is wedged, and is left behind.
STOP_TIMEOUT_S: Final = 5.0


async def cancel_until_done(
    tasks: Iterable[asyncio.Task[Any] | None], *, what: str, timeout_s: float = STOP_TIMEOUT_S
) -> None:
    """Cancel `tasks` (None: one never started) and return once each is done, or after `timeout_s`
    with an error logged for those still running (`what` names them). A task that failed is
    logged too: nobody else awaits it."""
    started = [task for task in tasks if task is not None]
    loop = asyncio.get_running_loop()
    until = loop.time() + timeout_s
    while pending := [task for task in started if not task.done()]:
        left = until - loop.time()
        if left <= 0:
            names = [task.get_name() for task in pending]
            log.error("tasks still running after repeated cancels: left behind", what=what, tasks=names)
            break
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=min(RECANCEL_S, left))
    for task in started:
        if task.done() and not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("a stopped task had failed", what=what, task=task.get_name(), error=repr(exc))


@contextlib.contextmanager
def raising_lost_cancels() -> Iterator[None]:
    """Raise CancelledError after a block that ended normally although this task was cancelled
    in it (a cancel `wait_for` lost: see above), so a request's caller stops when it is told to
    — a job cancelled in the middle of a bus call, a handler whose client went away."""
    task = asyncio.current_task()
    before = task.cancelling() if task is not None else 0
    yield
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError
