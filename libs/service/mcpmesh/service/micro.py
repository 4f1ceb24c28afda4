"""nats.micro endpoints whose requests run concurrently, with STATS that time the whole handling.

nats-py runs a subscription's callbacks one at a time, so the kit hands each request to its own
task. A plain nats.micro endpoint would then time only the spawn (microseconds) and never see
an error (the handler returns before the work fails). Here the endpoint accepts and starts
the work synchronously, in arrival order, then times the task and counts the outcome when the
task ends: `num_requests`, `num_errors`, `processing_time` and `average_processing_time` in a
STATS reply describe finished requests as the handler served them.

It subclasses nats.micro's `Endpoint` and fills the counters its `Service.stats()` reads (private
in nats-py 2.x): libs/service/tests/test_observability.py fails if an upgrade changes them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from nats.aio.msg import Msg
from nats.micro.request import Request
from nats.micro.service import Endpoint, EndpointConfig, Service

from mcpmesh.telemetry.logs import get_logger

__all__ = ["ConcurrentHandler", "add_concurrent_endpoint"]

log = get_logger("mcpmesh.service")

#: Called in arrival order; returns the work, which ends with an error description or None for success.
ConcurrentHandler = Callable[[Request], Coroutine[Any, Any, str | None]]


class _ConcurrentEndpoint(Endpoint):
    def __init__(
        self,
        service: Service,
        config: EndpointConfig,
        handler: ConcurrentHandler,
        tasks: set[asyncio.Task[None]],
    ) -> None:
        super().__init__(service, config)
        self._work = handler
        self._tasks = tasks

    async def _handle_request(self, msg: Msg) -> None:
        work = self._work(Request(msg))
        task = asyncio.get_running_loop().create_task(self._timed(work, time.perf_counter_ns()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _timed(self, work: Coroutine[Any, Any, str | None], started_ns: int) -> None:
        try:
            error = await work
        except Exception as exc:  # the handler answers every request itself; this is a bug, not a reply
            log.exception("request handler failed")
            error = type(exc).__name__
        self._num_requests += 1
        if error is not None:
            self._num_errors += 1
            self._last_error = error  # type: ignore[assignment]  # nats-py annotates it as always None
        self._processing_time += time.perf_counter_ns() - started_ns
        self._average_processing_time = int(self._processing_time / self._num_requests)


async def add_concurrent_endpoint(
    micro: Service,
    *,
    name: str,
    subject: str,
    queue_group: str,
    handler: ConcurrentHandler,
    tasks: set[asyncio.Task[None]],
) -> None:
    """Serve `subject` on `micro`: `handler(request)` is called per request in arrival order and the
    coroutine it returns runs as its own task (kept in `tasks` until it ends)."""
    endpoint = _ConcurrentEndpoint(
        micro,
        EndpointConfig(name=name, subject=subject, queue_group=queue_group, handler=_unused),
        handler,
        tasks,
    )
    await endpoint._start()
    micro._endpoints.append(endpoint)


async def _unused(_request: Request) -> None:  # nats.micro wants a handler; ours is called instead
    raise AssertionError("a concurrent endpoint serves requests through its own handler")
