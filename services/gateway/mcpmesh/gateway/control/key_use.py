"""Key use on the hot path: queued in memory, flushed in the background about once a second.

A flush writes `last_used_at` of every key used since the last one in one bulk write, then
publishes the queued audit events with core NATS (`audit.publish_nowait`: no JetStream ack
awaited; the `Nats-Msg-Id` header lets the AUDIT stream drop a re-sent copy within its
duplicate window, and the audit writer's `_id` drops any later one). Events go out in chunks
of `PUBLISH_CHUNK`, each followed by a NATS flush (a PING/PONG: the server has read the chunk)
and a yield to the event loop, so a flush never holds the loop for long. A chunk whose NATS
flush fails is queued again at the front, in order, for the next flush.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from datetime import UTC, datetime
from typing import Final

from mcpmesh.bus import Bus
from mcpmesh.gateway.control import audit
from mcpmesh.gateway.control.keys import KeyRegistry
from mcpmesh.proto.events import AuditEvent
from mcpmesh.telemetry.logs import get_logger

log = get_logger("mcpmesh.gateway.control")

#: Audit events held while NATS cannot take them (about 0.6 KB each): some ten seconds of a
#: replica's full throughput. Past it the oldest is dropped and counted (`dropped_total`,
#: metric `mcpmesh_gateway_audit_dropped_total`): memory stays bounded whatever the bus does.
MAX_QUEUED: Final = 10_000
#: Audit events published between two NATS flushes (and loop yields).
PUBLISH_CHUNK: Final = 100
#: How long one chunk's NATS flush may take before the chunk is retried at the next flush.
FLUSH_TIMEOUT_S: Final = 5
#: The last flush at stop: a stalled store must not hold the gateway's shutdown.
STOP_FLUSH_S: Final = 10


class KeyUseRecorder:
    def __init__(self, keys: KeyRegistry, bus: Bus, *, interval_s: float = 1.0) -> None:
        self.keys = keys
        self.bus = bus
        self.interval_s = interval_s
        self._last_used: dict[str, datetime] = {}
        self._events: deque[AuditEvent] = deque()
        self.dropped = 0  # since the last flush's warning
        self.dropped_total = 0
        self.published = 0  # audit events handed to NATS and flushed, for tests and metrics
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._flushing = asyncio.Lock()

    def note(
        self, org_id: str, key_id: str, *, action: str, outcome: str, request_id: str, ts: float
    ) -> None:
        """Cheap and synchronous: no I/O here."""
        used = datetime.fromtimestamp(ts, UTC)
        previous = self._last_used.get(key_id)
        if previous is None or used > previous:
            self._last_used[key_id] = used
        if len(self._events) >= MAX_QUEUED:
            self._events.popleft()
            self.dropped += 1
            self.dropped_total += 1
        self._events.append(
            audit.new_event(org_id, actor=key_id, action=action, outcome=outcome, request_id=request_id)
        )

    @property
    def queued(self) -> int:
        return len(self._events)

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="key-use-flusher")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:  # what was noted before stop is not lost, if NATS and MongoDB answer in time
            async with asyncio.timeout(STOP_FLUSH_S):
                await self.flush()
        except Exception as exc:
            log.error("key uses not recorded at shutdown", audit_events=len(self._events), error=repr(exc))

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.interval_s)
            try:
                await self.flush()
            except Exception as exc:
                log.warning("key use flush failed: will retry", error=repr(exc))

    async def flush(self) -> None:
        """`last_used_at` (one bulk write), then the audit events queued when the flush began."""
        async with self._flushing:
            await self._touch()
            await self._publish(len(self._events))
        if self.dropped:
            log.warning("audit events dropped: queue full", dropped=self.dropped)
            self.dropped = 0

    async def _touch(self) -> None:
        used, self._last_used = self._last_used, {}
        if not used:
            return
        try:
            await self.keys.touch(used)
        except Exception:
            for key_id, ts in used.items():  # keep them for the next flush
                self._last_used[key_id] = max(ts, self._last_used.get(key_id, ts))
            raise

    async def _publish(self, count: int) -> None:
        """Up to `count` events from the front of the queue (those noted since are left for the
        next flush, so a flush is bounded even under a steady stream of key uses)."""
        while count > 0 and self._events:
            n = min(PUBLISH_CHUNK, count, len(self._events))
            chunk = [self._events.popleft() for _ in range(n)]
            count -= n
            sent = 0
            try:
                for event in chunk:
                    await audit.publish_nowait(self.bus, event)
                    sent += 1
                await self.bus.nc.flush(timeout=FLUSH_TIMEOUT_S)
            except Exception as exc:
                # Re-send the whole chunk: a copy that did arrive is dropped by the stream's
                # duplicate window (same Nats-Msg-Id) or by the writer (same _id).
                self._events.extendleft(reversed(chunk))
                raise RuntimeError(f"{len(chunk) - sent} of {len(chunk)} audit events not published") from exc
            self.published += n
            await asyncio.sleep(0)  # let requests in between chunks
