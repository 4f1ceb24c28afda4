"""Time series of requests, errors and latency, at the finest width that fits a bucket cap.

Buckets start one minute wide; when there would be more than `max_buckets`, the width steps
up (1 → 5 → 15 → 60 → 360 → 1440 minutes) and buckets are merged, so memory is bounded by the
cap, not by the input or its time span. Two series merge at the wider of their widths.
`jumps` finds the windows where the error rate or p95 latency jumped above the series' median.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Final

from mcpmesh.logs.lines import minute_iso
from mcpmesh.logs.sketch import Quantiles

WIDTHS: Final = (1, 5, 15, 60, 360, 1440)
#: Bucket latency sketches: 5 % relative accuracy, exact up to this many values.
BUCKET_ACCURACY: Final = 0.05
BUCKET_EXACT: Final = 32
SUSTAINED_REQUESTS: Final = 200


class Bucket:
    __slots__ = ("errors", "latency", "requests", "server_errors")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.server_errors = 0
        self.latency = Quantiles(BUCKET_ACCURACY, BUCKET_EXACT)

    def merge(self, other: Bucket) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.server_errors += other.server_errors
        self.latency.merge(other.latency)

    def state(self) -> list[Any]:
        return [self.requests, self.errors, self.server_errors, self.latency.state()]

    @classmethod
    def load(cls, state: list[Any]) -> Bucket:
        bucket = cls()
        bucket.requests, bucket.errors, bucket.server_errors = (int(v) for v in state[:3])
        bucket.latency = Quantiles.from_state(state[3])
        return bucket


class Series:
    def __init__(self, max_buckets: int = 1440) -> None:
        self.max_buckets = max_buckets
        self.width = WIDTHS[0]
        self.buckets: dict[int, Bucket] = {}

    def bucket(self, minute: int) -> Bucket:
        start = minute - minute % self.width
        found = self.buckets.get(start)
        if found is None:
            if len(self.buckets) >= self.max_buckets and self.width < WIDTHS[-1]:
                self.widen(WIDTHS[WIDTHS.index(self.width) + 1])
                return self.bucket(minute)
            found = self.buckets[start] = Bucket()
        return found

    def widen(self, width: int) -> None:
        """Re-bucket at a wider width (a multiple of the current one)."""
        if width <= self.width:
            return
        old, self.buckets, self.width = self.buckets, {}, width
        for start, bucket in old.items():
            key = start - start % width
            if key in self.buckets:
                self.buckets[key].merge(bucket)
            else:
                self.buckets[key] = bucket
        if len(self.buckets) > self.max_buckets and width < WIDTHS[-1]:
            self.widen(WIDTHS[WIDTHS.index(width) + 1])

    def merge(self, other: Series) -> None:
        self.widen(other.width)
        for start, bucket in other.buckets.items():
            key = start - start % self.width
            if key in self.buckets:
                self.buckets[key].merge(bucket)
            else:
                self.buckets[key] = Bucket.load(bucket.state())
        if len(self.buckets) > self.max_buckets and self.width < WIDTHS[-1]:
            self.widen(WIDTHS[WIDTHS.index(self.width) + 1])

    def state(self) -> dict[str, Any]:
        return {"width": self.width, "buckets": {str(k): b.state() for k, b in self.buckets.items()}}

    def load(self, state: dict[str, Any]) -> Series:
        self.width = int(state["width"])
        self.buckets = {int(k): Bucket.load(v) for k, v in state["buckets"].items()}
        return self

    def points(self, limit: int) -> list[dict[str, Any]]:
        """The buckets in time order (the last `limit`): start, requests, errors, 5xx, p95 ms."""
        return [
            {
                "start": minute_iso(start),
                "requests": b.requests,
                "errors": b.errors,
                "server_errors": b.server_errors,
                "p95_ms": _round(b.latency.quantile(0.95)),
            }
            for start, b in sorted(self.buckets.items())[-limit:]
        ]

    def jumps(self, min_requests: int = 20) -> list[dict[str, Any]]:
        """Windows (runs of consecutive buckets) where errors or latency jumped, each with its
        figures next to the medians of the series' buckets (with at least `min_requests`):
        errors when the bucket's error rate is at least twice the median and 5 points above it,
        and its error count at least 10 and 5 standard deviations (binomial, at the median rate)
        above the count expected; latency when p95 is at least twice the median p95 and 100 ms above it, and p50
        at least twice the median p50 and 50 ms above it (a shift, not a few slow requests), over two buckets or more, or one of at least
        SUSTAINED_REQUESTS requests."""
        busy = [(s, b) for s, b in sorted(self.buckets.items()) if b.requests >= min_requests]
        if len(busy) < 3:
            return []
        rates = {s: b.errors / b.requests for s, b in busy}
        p95s = {s: b.latency.quantile(0.95) or 0.0 for s, b in busy}
        p50s = {s: b.latency.quantile(0.5) or 0.0 for s, b in busy}
        rate_median = statistics.median(rates.values())
        p95_median = statistics.median(p95s.values())
        p50_median = statistics.median(p50s.values())
        base = min(max(rate_median, 0.001), 0.999)
        windows: list[dict[str, Any]] = []
        for start, bucket in busy:
            kinds = []
            expected = bucket.requests * base
            spread = math.sqrt(bucket.requests * base * (1 - base))
            if rates[start] >= max(2 * rate_median, rate_median + 0.05) and bucket.errors >= max(
                10, expected + 5 * spread
            ):
                kinds.append("errors")
            if p95s[start] >= max(2 * p95_median, p95_median + 100) and p50s[start] >= max(
                2 * p50_median, p50_median + 50
            ):
                kinds.append("latency")
            if not kinds:
                continue
            last = windows[-1] if windows else None
            if last is not None and last["_end"] == start and last["_kinds"] == kinds:
                last["_end"] = start + self.width
                last["requests"] += bucket.requests
                last["errors"] += bucket.errors
                last["peak_p95_ms"] = max(last["peak_p95_ms"], _round(p95s[start]) or 0.0)
                continue
            windows.append(
                {
                    "_kinds": kinds,
                    "_start": start,
                    "_end": start + self.width,
                    "requests": bucket.requests,
                    "errors": bucket.errors,
                    "peak_p95_ms": _round(p95s[start]) or 0.0,
                }
            )
        # One small bucket's latency is noisy: a latency-only jump must last two buckets or
        # rest on at least SUSTAINED_REQUESTS requests.
        windows = [
            w
            for w in windows
            if w["_kinds"] != ["latency"]
            or w["_end"] - w["_start"] > self.width
            or w["requests"] >= SUSTAINED_REQUESTS
        ]
        return [
            {
                "kind": "+".join(w.pop("_kinds")),
                "start": minute_iso(w.pop("_start")),
                "end": minute_iso(w.pop("_end")),
                **w,
                "error_rate": round(w["errors"] / w["requests"], 4),
                "median_error_rate": round(rate_median, 4),
                "median_p95_ms": _round(p95_median),
            }
            for w in windows
        ]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
