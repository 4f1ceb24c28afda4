"""Rate limits and the monthly tool-call quota, shared by every gateway replica.

Counters are fixed windows (UTC minute, UTC day, UTC month) kept in NATS KV, one entry per
(key or org, window). A replica does not touch KV per request: it *leases* a small chunk of
the remaining allowance with one optimistic-concurrency update (`kv.update` with the last
revision, retried on conflict) and spends it locally. The KV counter is therefore the sum
of what every replica leased and never exceeds the limit, so the replicas together never
admit more than the limit; what they can fall short by is the leased but unspent tail,
at most one chunk per replica. A chunk is 1/40 of the limit (and never more than a quarter
of what is left), so two replicas stay within 5% of the limit, usually far closer; a limit
under 40 is leased one request at a time, i.e. exact.

Checked per request: the key's and the org's requests per minute and per day
(`OrgSettings.rate_limits`; a key is held to the same numbers as its org, and the org's
keys together too), and for `tools/call` the org's monthly quota, whose KV counter starts
from the control plane's count of the month so far (`ControlPlane.monthly_tool_calls`).
A limit of 0 refuses everything. Fixed windows allow a burst of up to twice a limit
across a window boundary: the price of a counter per window instead of per request.
"""

from __future__ import annotations

import asyncio
import calendar
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

import nats.errors
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from mcpmesh.bus import Bus
from mcpmesh.gateway.errors import GatewayError
from mcpmesh.proto.errors import ErrorCode
from mcpmesh.proto.tiers import OrgSettings
from mcpmesh.telemetry.logs import get_logger

log = get_logger("mcpmesh.gateway.limits")

WindowKind = Literal["minute", "day", "month"]
#: KV bucket per window kind and how long its entries live (a little over one window).
BUCKETS: Final[dict[WindowKind, tuple[str, float]]] = {
    "minute": ("GATEWAY_RATE_MINUTE", 180.0),
    "day": ("GATEWAY_RATE_DAY", 2 * 86_400.0),
    "month": ("GATEWAY_QUOTA_MONTH", 40 * 86_400.0),
}
_CAS_ATTEMPTS: Final = 20
_CHUNK_DIVISOR: Final = 40

_WHAT: Final[dict[str, str]] = {
    "requests_per_minute": "requests per minute",
    "requests_per_day": "requests per day",
    "monthly_tool_calls": "tool calls per month",
}


_window_cache: dict[tuple[WindowKind, int], tuple[str, float]] = {}


def window_of(kind: WindowKind, now: float) -> tuple[str, float]:
    """(window id, unix time the window ends) for `now`, in UTC (computed once per second)."""
    key = (kind, int(now))
    hit = _window_cache.get(key)
    if hit is None:
        if len(_window_cache) > 64:
            _window_cache.clear()
        hit = _window_cache[key] = _compute_window(kind, now)
    return hit


def _compute_window(kind: WindowKind, now: float) -> tuple[str, float]:
    if kind == "minute":
        index = int(now // 60)
        return str(index), (index + 1) * 60.0
    moment = datetime.fromtimestamp(now, UTC)
    if kind == "day":
        index = int(now // 86_400)
        return moment.strftime("%Y%m%d"), (index + 1) * 86_400.0
    year, month = moment.year, moment.month
    days = calendar.monthrange(year, month)[1]
    end = datetime(year, month, days, tzinfo=UTC).timestamp() + 86_400.0
    return moment.strftime("%Y%m"), end


@dataclass(frozen=True)
class Limit:
    name: str  # requests_per_minute | requests_per_day | monthly_tool_calls
    holder: Literal["key", "org"]
    holder_id: str  # key id or org id (both validated shapes: KV-key safe)
    value: int
    window: WindowKind

    def counter(self, window_id: str) -> str:
        return f"{self.holder}.{self.holder_id}.{window_id}"


@dataclass
class _Lease:
    window_id: str
    available: int = 0
    full: bool = False  # the shared counter reached the limit in this window


def limits_for(org_id: str, key_id: str, settings: OrgSettings, *, tool_call: bool) -> list[Limit]:
    rates = settings.rate_limits
    out = [
        Limit("requests_per_minute", "key", key_id, rates.requests_per_minute, "minute"),
        Limit("requests_per_minute", "org", org_id, rates.requests_per_minute, "minute"),
        Limit("requests_per_day", "key", key_id, rates.requests_per_day, "day"),
        Limit("requests_per_day", "org", org_id, rates.requests_per_day, "day"),
    ]
    if tool_call:
        out.append(Limit("monthly_tool_calls", "org", org_id, settings.monthly_tool_calls, "month"))
    return out


class Limiter:
    def __init__(
        self,
        bus: Bus,
        quota_seed: Callable[[str], Awaitable[int]] | None = None,
        *,
        kv_timeout_s: float = 2.0,
    ) -> None:
        self.bus = bus
        self.kv_timeout_s = kv_timeout_s
        self.quota_seed = quota_seed
        self._kv: dict[WindowKind, KeyValue] = {}
        self._leases: dict[tuple[str, WindowKind, str], _Lease] = {}
        self._locks: dict[tuple[str, WindowKind, str], asyncio.Lock] = {}
        self.kv_updates = 0
        self.kv_conflicts = 0

    async def start(self) -> None:
        for kind, (bucket, ttl) in BUCKETS.items():
            self._kv[kind] = await self.bus.kv(bucket, ttl=ttl)

    async def admit(self, org_id: str, key_id: str, settings: OrgSettings, *, tool_call: bool) -> None:
        """Spend one unit of every applicable limit, or raise a 429 naming the first one exhausted."""
        now = time.time()
        taken: list[_Lease] = []
        try:
            for limit in limits_for(org_id, key_id, settings, tool_call=tool_call):
                lease = await self._lease(limit, now)
                if lease.available <= 0:
                    raise self._refusal(limit, now)
                lease.available -= 1
                taken.append(lease)
        except BaseException:
            for lease in taken:  # nothing is spent on a refused request
                lease.available += 1
            raise

    async def _lease(self, limit: Limit, now: float) -> _Lease:
        window_id, _ends = window_of(limit.window, now)
        slot = (limit.holder + ":" + limit.holder_id, limit.window, limit.name)
        lease = self._leases.get(slot)
        if lease is not None and lease.window_id == window_id and (lease.available > 0 or lease.full):
            return lease
        lock = self._locks.setdefault(slot, asyncio.Lock())
        async with lock:
            lease = self._leases.get(slot)
            if lease is None or lease.window_id != window_id:
                lease = _Lease(window_id=window_id)
                self._leases[slot] = lease
                self._prune(now)
            if lease.available > 0 or lease.full:
                return lease
            try:
                async with asyncio.timeout(self.kv_timeout_s):
                    granted, full = await self._claim(limit, window_id)
            except (nats.errors.Error, TimeoutError, OSError) as exc:
                # Fail closed: without the shared counter nobody can know what is left.
                log.warning("rate limit counter unavailable", error=repr(exc))
                raise GatewayError(
                    ErrorCode.UNAVAILABLE,
                    "rate limits cannot be checked right now (the bus is unavailable): retry shortly",
                    headers={"Retry-After": "1"},
                ) from None
            lease.available += granted
            lease.full = full and lease.available <= 0
            return lease

    async def _claim(self, limit: Limit, window_id: str) -> tuple[int, bool]:
        """Lease a chunk from the shared counter: (units granted, counter now full)."""
        if limit.value <= 0:
            return 0, True
        kv = self._kv[limit.window]
        name = limit.counter(window_id)
        base_chunk = max(1, limit.value // _CHUNK_DIVISOR)
        for _ in range(_CAS_ATTEMPTS):
            try:
                entry = await kv.get(name)
                used = int(entry.value or b"0")
                revision: int | None = entry.revision
            except KeyNotFoundError:
                used = await self._seed(limit)
                revision = None
            left = limit.value - used
            if left <= 0:
                return 0, True
            grant = max(1, min(base_chunk, left // 4 or 1))
            try:
                if revision is None:
                    await kv.create(name, str(used + grant).encode())
                else:
                    await kv.update(name, str(used + grant).encode(), last=revision)
            except KeyWrongLastSequenceError:
                self.kv_conflicts += 1
                await asyncio.sleep(0)
                continue
            self.kv_updates += 1
            return grant, False
        raise GatewayError(
            ErrorCode.UNAVAILABLE,
            "the rate limiter is contended: retry in a moment",
            headers={"Retry-After": "1"},
        )

    async def _seed(self, limit: Limit) -> int:
        if limit.name != "monthly_tool_calls" or self.quota_seed is None:
            return 0
        try:
            return max(0, int(await self.quota_seed(limit.holder_id)))
        except Exception as exc:  # the quota starts from zero rather than failing requests
            log.warning("monthly usage unavailable for the quota seed", error=repr(exc))
            return 0

    def _prune(self, now: float) -> None:
        if len(self._leases) < 50_000:
            return
        current = {kind: window_of(kind, now)[0] for kind in BUCKETS}
        self._leases = {k: v for k, v in self._leases.items() if v.window_id == current[k[1]]}
        self._locks = {k: v for k, v in self._locks.items() if k in self._leases}

    @staticmethod
    def _refusal(limit: Limit, now: float) -> GatewayError:
        _window_id, ends = window_of(limit.window, now)
        retry_after = max(1, math.ceil(ends - now))
        resets_at = datetime.fromtimestamp(ends, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        who = "this API key" if limit.holder == "key" else "this organization"
        what = _WHAT[limit.name]
        code = ErrorCode.LIMIT_EXCEEDED if limit.name == "monthly_tool_calls" else ErrorCode.RATE_LIMITED
        kind = "quota" if limit.name == "monthly_tool_calls" else "rate limit"
        return GatewayError(
            code,
            f"{kind} exceeded: {who} may make {limit.value} {what}; "
            f"it resets at {resets_at} (retry after {retry_after} s)",
            status=429,
            headers={"Retry-After": str(retry_after)},
            extra={
                "limit": f"{limit.holder}.{limit.name}",
                "limit_value": limit.value,
                "resets_at": resets_at,
                "retry_after_s": retry_after,
            },
        )
