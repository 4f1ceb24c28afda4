"""Admission control: a bound on the calls a process works on and on the queue in front of
them, shared fairly among orgs. Past the bounds a call is refused at once (`Overloaded`,
which callers answer with 503 / `unavailable` and `Retry-After`), never queued until it
times out.

    gate = Admission(AdmissionLimits(max_inflight=64, max_queued=128), name="the gateway")
    await gate.enter(org_id)          # admitted, or raises Overloaded
    try:
        ...                           # the call
    finally:
        gate.leave(org_id)

A call is admitted at once while fewer than `max_inflight` calls are in flight and its org
holds fewer than its share (`org_share` of `max_inflight`, at least one). Otherwise it waits
in the queue (at most `max_queued` calls, an org at most `org_share` of them) for at most
`queue_wait_s`; past either bound, or when the wait is over, it is refused. When a call
leaves, the orgs with queued calls take turns (round robin): a tenant flooding the process
gets at most its share of it, and a tenant sending a few calls is served at the next free
slot, not behind the flood. State is per org with calls in flight or queued, and nothing
else: an org's entries go when its last call does.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from mcpmesh.telemetry.logs import get_logger

log = get_logger("mcpmesh.admission")

Reason = Literal["capacity", "org_share", "queue_wait"]
#: Why calls are refused, in the order the metric lists them.
REASONS: Final[tuple[Reason, ...]] = ("capacity", "org_share", "queue_wait")

#: The environment variables of `AdmissionLimits.from_env` (documented in each component's README).
ENV_MAX_INFLIGHT: Final = "MCPMESH_MAX_INFLIGHT"
ENV_MAX_QUEUED: Final = "MCPMESH_MAX_QUEUED"
ENV_QUEUE_WAIT_S: Final = "MCPMESH_QUEUE_WAIT_S"
ENV_ORG_SHARE: Final = "MCPMESH_ORG_SHARE"
#: Refusals are logged at most this often (one line with the counts), not one line each.
LOG_EVERY_S: Final = 5.0


@dataclass(frozen=True)
class AdmissionLimits:
    max_inflight: int = 256  # calls worked on at once
    max_queued: int = 256  # calls waiting for a slot (0: refuse as soon as all slots are taken)
    queue_wait_s: float = 1.0  # longest a call waits in the queue before it is refused
    org_share: float = 0.5  # of max_inflight and of max_queued, the most one org may hold (1: no cap)

    def __post_init__(self) -> None:
        if self.max_inflight < 1:
            raise ValueError(f"{ENV_MAX_INFLIGHT}={self.max_inflight} must be at least 1")
        if self.max_queued < 0:
            raise ValueError(f"{ENV_MAX_QUEUED}={self.max_queued} must be at least 0")
        if not self.queue_wait_s > 0:
            raise ValueError(f"{ENV_QUEUE_WAIT_S}={self.queue_wait_s:g} must be more than 0")
        if not 0 < self.org_share <= 1:
            raise ValueError(f"{ENV_ORG_SHARE}={self.org_share:g} must be more than 0 and at most 1")

    @property
    def org_inflight(self) -> int:
        return max(1, math.floor(self.max_inflight * self.org_share))

    @property
    def org_queued(self) -> int:
        return max(1, math.floor(self.max_queued * self.org_share)) if self.max_queued else 0

    @classmethod
    def from_env(cls, defaults: AdmissionLimits, environ: Mapping[str, str] | None = None) -> AdmissionLimits:
        """`defaults` with the variables that are set; raises ValueError naming a bad one."""
        env = os.environ if environ is None else environ

        def read(name: str, default: float, kind: type[int] | type[float]) -> float:
            raw = env.get(name)
            if raw in (None, ""):
                return default
            try:
                return kind(raw)
            except ValueError:
                what = "an integer" if kind is int else "a number"
                raise ValueError(f"{name}={raw!r} is not {what}") from None

        return cls(
            max_inflight=int(read(ENV_MAX_INFLIGHT, defaults.max_inflight, int)),
            max_queued=int(read(ENV_MAX_QUEUED, defaults.max_queued, int)),
            queue_wait_s=read(ENV_QUEUE_WAIT_S, defaults.queue_wait_s, float),
            org_share=read(ENV_ORG_SHARE, defaults.org_share, float),
        )


class Overloaded(Exception):
    """Refused at admission; `message` is one sentence for the client, `reason` one of REASONS."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Admission:
    """One process's gate (see the module docstring). Not thread-safe: one event loop."""

    def __init__(self, limits: AdmissionLimits, *, name: str) -> None:
        self.limits = limits
        self.name = name  # how refusals name this process: "the gateway", "service 'context'"
        self.inflight = 0
        self.queued = 0
        self.refused: dict[Reason, int] = dict.fromkeys(REASONS, 0)
        self._org_inflight: dict[str, int] = {}
        self._queues: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()
        self._next_log = 0.0

    def try_enter(self, org_id: str) -> bool:
        """Admit now if a slot is free for this org (and none of its calls is queued before it)."""
        held = self._org_inflight.get(org_id, 0)
        if (
            self.inflight < self.limits.max_inflight
            and held < self.limits.org_inflight
            and org_id not in self._queues
        ):
            self.inflight += 1
            self._org_inflight[org_id] = held + 1
            return True
        return False

    async def enter(self, org_id: str, *, wait_s: float | None = None) -> None:
        """Admit, queue for at most `wait_s` (default and upper bound: `queue_wait_s`), or raise Overloaded."""
        if self.try_enter(org_id):
            return
        limits = self.limits
        queue = self._queues.get(org_id)
        org_waiting = len(queue) if queue is not None else 0
        if self.queued >= limits.max_queued or org_waiting >= limits.org_queued:
            # The org's own share is what stops it if there is room for others (a free slot, or
            # room in the queue it has used up its share of); otherwise the whole process is full.
            if self.inflight < limits.max_inflight or self.queued < limits.max_queued:
                raise self._refuse(
                    "org_share",
                    f"{self.name} is busy with this organization's other calls (its share is "
                    f"{limits.org_inflight} at a time, {limits.org_queued} waiting): retry in a second",
                )
            raise self._refuse(
                "capacity",
                f"{self.name} is at capacity ({self.inflight} calls in progress, {self.queued} waiting): "
                "retry in a second",
            )
        if queue is None:
            queue = self._queues[org_id] = deque()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(waiter)
        self.queued += 1
        wait = limits.queue_wait_s if wait_s is None else max(0.0, min(wait_s, limits.queue_wait_s))
        try:
            async with asyncio.timeout(wait):
                await waiter
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return  # granted just as the wait ended: admitted after all
            self._unqueue(org_id, waiter)
            raise self._refuse(
                "queue_wait",
                f"{self.name} is at capacity: the call waited {wait:g} s for a slot; retry in a second",
            ) from None
        except BaseException:  # cancelled (the caller went away)
            if waiter.done() and not waiter.cancelled():
                self.leave(org_id)  # granted at the same moment: pass the slot on
            else:
                self._unqueue(org_id, waiter)
            raise

    def leave(self, org_id: str) -> None:
        """A call admitted with `try_enter` or `enter` is done; hand its slot to the next queued org."""
        self.inflight -= 1
        held = self._org_inflight.get(org_id, 1) - 1
        if held > 0:
            self._org_inflight[org_id] = held
        else:
            self._org_inflight.pop(org_id, None)
        if self._queues:
            self._grant()

    def _grant(self) -> None:
        """Fill free slots from the queues, one org after another, skipping orgs at their share."""
        limits = self.limits
        skipped = 0
        while self._queues and self.inflight < limits.max_inflight and skipped < len(self._queues):
            org_id, queue = next(iter(self._queues.items()))
            self._queues.move_to_end(org_id)
            held = self._org_inflight.get(org_id, 0)
            if held >= limits.org_inflight:
                skipped += 1
                continue
            waiter = queue.popleft()
            if not queue:
                del self._queues[org_id]
            self.queued -= 1
            if waiter.done():  # cancelled while it waited; its task has not unqueued it yet
                continue
            skipped = 0
            self.inflight += 1
            self._org_inflight[org_id] = held + 1
            waiter.set_result(None)

    def _unqueue(self, org_id: str, waiter: asyncio.Future[None]) -> None:
        queue = self._queues.get(org_id)
        if queue is None:
            return
        try:
            queue.remove(waiter)
        except ValueError:
            return
        self.queued -= 1
        if not queue:
            del self._queues[org_id]

    def _refuse(self, reason: Reason, message: str) -> Overloaded:
        self.refused[reason] += 1
        now = time.monotonic()
        if now >= self._next_log:
            self._next_log = now + LOG_EVERY_S
            log.warning(
                "refusing calls: at capacity",
                gate=self.name,
                inflight=self.inflight,
                queued=self.queued,
                refused_so_far=dict(self.refused),
            )
        return Overloaded(reason, message)

    @property
    def orgs(self) -> int:
        """Orgs with calls in flight or queued (what the gate holds state for)."""
        return len(self._org_inflight.keys() | self._queues.keys())
