"""Key use on the hot path: queued in memory, flushed in the background about once a second
(`last_used_at` in one bulk write, audit events published to JetStream)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from datetime import UTC, datetime

from mcpmesh.bus import Bus
from mcpmesh.gateway.control import audit
from mcpmesh.gateway.control.keys import KeyRegistry
from mcpmesh.proto.events import AuditEvent
from mcpmesh.telemetry.logs import get_logger

log = get_logger("mcpmesh.gateway.control")

MAX_QUEUED = 100_000
_PUBLISH_CHUNK = 500


class KeyUseRecorder:
    def __init__(self, keys: KeyRegistry, bus: Bus, *, interval_s: float = 1.0) -> None:
        self.keys = keys
        self.bus = bus
        self.interval_s = interval_s
        self._last_used: dict[str, datetime] = {}
        self._events: deque[AuditEvent] = deque()
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def note(
        self, org_id: str, key_id: str, *, action: str, outcome: str, request_id: str, ts: float
    ) -> None:
        """Cheap and synchronous: no I/O here."""
        self._last_used[key_id] = datetime.fromtimestamp(ts, UTC)
        if len(self._events) >= MAX_QUEUED:
            self._events.popleft()
            self.dropped += 1
        self._events.append(
            audit.new_event(org_id, actor=key_id, action=action, outcome=outcome, request_id=request_id)
        )

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="key-use-flusher")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self.flush()  # what was noted before stop is not lost, if NATS and MongoDB are up
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
        used, self._last_used = self._last_used, {}
        try:
            await self.keys.touch(used)
        except Exception:
            for key_id, ts in used.items():  # keep them for the next flush
                self._last_used[key_id] = max(ts, self._last_used.get(key_id, ts))
            raise
        while self._events:
            chunk = [self._events.popleft() for _ in range(min(_PUBLISH_CHUNK, len(self._events)))]
            results = await asyncio.gather(
                *(audit.publish(self.bus, e) for e in chunk), return_exceptions=True
            )
            failed = [e for e, r in zip(chunk, results, strict=True) if isinstance(r, BaseException)]
            if failed:
                self._events.extendleft(reversed(failed))
                raise RuntimeError(f"{len(failed)} audit events not published")
        if self.dropped:
            log.warning("audit events dropped: queue full", dropped=self.dropped)
            self.dropped = 0
