"""A JetStream durable pull consumer that hands decoded batches to a writer and acks after it.

Every gateway replica runs one on the same durable name, so the stream's messages are
shared among them. A message is acked only once `write` returned; if it raises, the
batch is nak'ed and redelivered, so nothing is lost when a writer stops or crashes.
`write` must therefore be idempotent (a redelivered event must not count twice).
An undecodable message, or one whose subject disagrees with its content, is
terminated with a warning (it would fail the same way forever).

Batching: a fetch returns what is there at once, which under a steady trickle is one or two
messages. So after a short fetch the writer keeps fetching for up to `linger_s` (or until it
holds `batch` messages) before writing: each `write` then covers many events, and the cost
per event of its few MongoDB operations drops accordingly. At most `batch` messages are
held in memory; the linger adds at most `linger_s` to the roll-up lag.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from mcpmesh.bus import Bus, cancel_until_done
from mcpmesh.telemetry.logs import get_logger

log = get_logger("mcpmesh.gateway.control")

T = TypeVar("T")

#: A message is redelivered if its batch was neither acked nor nak'ed within this time.
ACK_WAIT_S = 60.0
#: How long a stop waits for the batch in hand before it cancels the writer (it is redelivered).
STOP_BATCH_S = 5.0


class DurableWriter(Generic[T]):
    def __init__(
        self,
        bus: Bus,
        *,
        stream: str,
        durable: str,
        filter_subject: str,
        event_type: type[T],
        write: Callable[[list[T]], Awaitable[None]],
        check: Callable[[str, T], bool] = lambda _subject, _event: True,
        batch: int = 256,
        linger_s: float = 0.25,
    ) -> None:
        self.bus = bus
        self.stream = stream
        self.durable = durable
        self.filter_subject = filter_subject
        self.event_type = event_type
        self.write = write
        self.check = check
        self.batch = batch
        self.linger_s = linger_s
        self._sub: JetStreamContext.PullSubscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.written = 0  # events handed to `write` and acked, for tests and metrics

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        config = ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=ACK_WAIT_S,
            max_ack_pending=20_000,
            filter_subject=self.filter_subject,
        )
        self._sub = await self.bus.js.pull_subscribe(
            self.filter_subject, durable=self.durable, stream=self.stream, config=config
        )
        self._stopping.clear()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"writer-{self.durable}")

    async def stop(self) -> None:
        """Finish the batch in hand, then stop fetching (the durable consumer stays). A writer
        stalled past `STOP_BATCH_S` is cancelled until it ends (`cancel_until_done`: cancelled
        once, on Python 3.11 it could lose the cancel and the stop wait on the stall)."""
        self._stopping.set()
        if self._task is not None:
            await asyncio.wait([self._task], timeout=STOP_BATCH_S)
            await cancel_until_done([self._task], what=f"writer {self.durable}")
            self._task = None
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception as exc:  # connection closed already
                log.debug("writer unsubscribe failed", durable=self.durable, error=repr(exc))
            self._sub = None

    async def _run(self) -> None:
        assert self._sub is not None
        failures = 0
        while not self._stopping.is_set():
            try:
                msgs = await self._sub.fetch(self.batch, timeout=0.5)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError):
                await asyncio.sleep(0.5)
                continue
            except Exception as exc:
                log.warning("writer fetch failed", durable=self.durable, error=repr(exc))
                await asyncio.sleep(0.5)
                continue
            msgs = await self._fill(msgs)
            try:
                await self._handle(msgs)
                failures = 0
            except Exception as exc:
                failures += 1
                log.error("writer batch failed: redelivering", durable=self.durable, error=repr(exc))
                await asyncio.gather(*(m.nak(delay=1.0) for m in msgs), return_exceptions=True)
                await asyncio.sleep(min(5.0, 0.2 * 2**failures))

    async def _fill(self, msgs: list[Msg]) -> list[Msg]:
        """Top a short batch up for at most `linger_s` (fewer, larger writes)."""
        if self.linger_s <= 0:
            return msgs
        loop = asyncio.get_running_loop()
        until = loop.time() + self.linger_s
        while len(msgs) < self.batch and not self._stopping.is_set():
            left = until - loop.time()
            if left < 0.01 or self._sub is None:
                break
            try:
                msgs.extend(await self._sub.fetch(self.batch - len(msgs), timeout=left))
            except (nats.errors.TimeoutError, TimeoutError):
                break
            except Exception as exc:  # write what we hold; the main loop deals with the connection
                log.debug("writer top-up fetch failed", durable=self.durable, error=repr(exc))
                break
        return msgs

    async def _handle(self, msgs: list[Msg]) -> None:
        events: list[T] = []
        good: list[Msg] = []
        for msg in msgs:
            try:
                event = msgspec.json.decode(msg.data, type=self.event_type)
                ok = self.check(msg.subject, event)
            except (msgspec.DecodeError, ValueError):
                ok = False
            if not ok:
                log.warning("malformed event dropped", durable=self.durable, subject=msg.subject)
                await msg.term()
                continue
            events.append(event)
            good.append(msg)
        if events:
            await self.write(events)
        await asyncio.gather(*(m.ack() for m in good))
        self.written += len(events)
