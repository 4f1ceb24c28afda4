"""Cancellation reaching the work: a client's `notifications/cancelled`, or a client gone mid-call.

Both end in a `CancelNotice` on `mcp.<org>.<service>.cancel`, which every replica of the service
hears; the replica running the call stops it (see `mcpmesh.service.cancel`). Nothing is kept
here per request beyond the connections being watched:

- `notifications/cancelled` names the request by the client's JSON-RPC id; the gateway does not
  know which service runs it, so the notice goes to every service the key may use on that
  endpoint (`/mcp/<service>`: that one), named as `wire.client_request` names it.
- A client whose connection closes while its `tools/call` runs: `DisconnectWatch` notices it
  (every `interval_s`) and cancels the request's handler task; the bus exchange it was waiting
  on then tells the service, by the request's id (`mcpmesh.bus.mcp.exchange`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

from aiohttp import web

from mcpmesh.bus.mcp import cancel
from mcpmesh.gateway.catalog import can_list
from mcpmesh.gateway.control.principal import Principal
from mcpmesh.proto.headers import CancelNotice
from mcpmesh.telemetry.logs import get_logger

if TYPE_CHECKING:
    from mcpmesh.gateway.state import GatewayState

log = get_logger("mcpmesh.gateway")

#: How often the connections of calls in flight are checked for a client that went away.
WATCH_INTERVAL_S: Final = 0.2


async def forward_cancellation(
    state: GatewayState, principal: Principal, service: str | None, client_request: str
) -> None:
    """Tell the services the client may have sent the request to that it was cancelled."""
    if service is not None:
        services = [service]
    else:
        services = [s for s in state.discovery.names() if can_list(principal.scopes, s)]
    notice = CancelNotice(client_request=client_request, reason="the client cancelled the request")
    for name in services:
        stamp = state.router.stamps.stamp(principal, name)
        await cancel(state.bus, org_id=principal.org_id, service=name, stamp=stamp, notice=notice)


class DisconnectWatch:
    """Cancels the handler task of a request whose client closed the connection (aiohttp does
    not: its `handler_cancellation` is off, and stays off for the admin API's writes)."""

    def __init__(self, interval_s: float = WATCH_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._watched: dict[asyncio.Task[object], web.Request] = {}
        self._loop: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._watched)

    @contextmanager
    def watching(self, request: web.Request) -> Iterator[None]:
        """While the block runs, a closed client connection cancels the current task."""
        task = asyncio.current_task()
        if task is None:  # not in a task: nothing to cancel
            yield
            return
        self._watched[task] = request
        if self._loop is None or self._loop.done():
            self._loop = asyncio.get_running_loop().create_task(self._run())
        try:
            yield
        finally:
            self._watched.pop(task, None)

    async def _run(self) -> None:
        while self._watched:
            await asyncio.sleep(self.interval_s)
            for task, request in list(self._watched.items()):
                transport = request.transport
                if transport is None or transport.is_closing():
                    del self._watched[task]
                    log.info("client went away mid-call: cancelling it")
                    task.cancel()
