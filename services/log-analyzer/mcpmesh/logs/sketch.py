"""Mergeable percentiles: exact while small, a DDSketch (`ddsketch`, DataDog) past that.

Up to `EXACT_MAX` values are kept as they are and a quantile is the nearest-rank value of the
sorted list (what the reference analyzer computes). Past that the values go into a DDSketch
with relative accuracy `accuracy` (default 1 %): a quantile it returns is within
`accuracy x true value` of the true quantile (clamped to the exact min/max). Count, sum, min
and max stay exact. The sketch's size grows with log(max/min), not with the count.
"""

from __future__ import annotations

import math
from typing import Any, Final

from ddsketch import LogarithmicMapping
from ddsketch.ddsketch import BaseDDSketch
from ddsketch.store import DenseStore

#: Values kept exactly before switching to the sketch.
EXACT_MAX: Final = 1024
#: Default relative accuracy of the sketch.
ACCURACY: Final = 0.01


_KEY_CACHE_MAX: Final = 8192
_MAPPINGS: dict[float, tuple[LogarithmicMapping, dict[float, int]]] = {}


def _mapping_of(accuracy: float) -> tuple[LogarithmicMapping, dict[float, int]]:
    """The mapping of an accuracy and its value -> key cache, shared by every sketch of it
    (latencies are mostly whole milliseconds: the same few thousand values again and again)."""
    found = _MAPPINGS.get(accuracy)
    if found is None:
        found = _MAPPINGS[accuracy] = (LogarithmicMapping(accuracy), {})
    return found


class Quantiles:
    """Percentiles of non-negative values; `merge` and `state`/`from_state` make it mergeable."""

    __slots__ = (
        "_bins",
        "_exact",
        "_keys",
        "_mapping",
        "_pending",
        "accuracy",
        "count",
        "exact_max",
        "max",
        "min",
        "sum",
        "zeros",
    )

    def __init__(self, accuracy: float = ACCURACY, exact_max: int = EXACT_MAX) -> None:
        self.accuracy = accuracy
        self.exact_max = exact_max
        self._mapping, self._keys = _mapping_of(accuracy)
        self._bins = DenseStore()
        #: Counts by sketch key not yet in the store (one dict update per value; see _flush).
        self._pending: dict[int, int] = {}
        self._exact: list[float] | None = []
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.zeros = 0

    def add(self, value: float) -> None:
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        exact = self._exact
        if exact is not None:
            exact.append(value)
            if len(exact) > self.exact_max:
                self._spill()
        else:
            self._to_sketch(value)

    def _to_sketch(self, value: float) -> None:
        if value <= 0:
            self.zeros += 1
            return
        key = self._keys.get(value)
        if key is None:
            key = self._mapping.key(value)
            if len(self._keys) >= _KEY_CACHE_MAX:
                self._keys.clear()
            self._keys[value] = key
        self._pending[key] = self._pending.get(key, 0) + 1

    def _flush(self) -> DenseStore:
        """The store with the pending counts added."""
        if self._pending:
            for key, n in self._pending.items():
                self._bins.add(key, n)
            self._pending.clear()
        return self._bins

    def _spill(self) -> None:
        exact, self._exact = self._exact or [], None
        for value in exact:
            self._to_sketch(value)

    @property
    def exact(self) -> bool:
        """True while every value is kept (quantiles are then exact)."""
        return self._exact is not None

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0..1): nearest rank while exact, else within `accuracy` relative error."""
        if not self.count:
            return None
        if self._exact is not None:
            ordered = sorted(self._exact)
            return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
        sketch = BaseDDSketch(self._mapping, self._flush(), DenseStore(), self.zeros)
        value = sketch.get_quantile_value(q)
        return None if value is None else min(max(float(value), self.min), self.max)

    def merge(self, other: Quantiles) -> None:
        if other.accuracy != self.accuracy:
            raise ValueError("cannot merge sketches of different accuracy")
        if not other.count:
            return
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        if self._exact is not None and other._exact is not None:
            self._exact.extend(other._exact)
            if len(self._exact) > self.exact_max:
                self._spill()
            return
        if self._exact is not None:
            self._spill()
        if other._exact is not None:
            for value in other._exact:
                self._to_sketch(value)
        else:
            self.zeros += other.zeros
            self._flush().merge(other._flush())

    def state(self) -> dict[str, Any]:
        """JSON-safe state (`from_state` rebuilds it)."""
        out: dict[str, Any] = {"acc": self.accuracy, "em": self.exact_max, "n": self.count, "sum": self.sum}
        if self.count:
            out["min"], out["max"] = self.min, self.max
        if self._exact is not None:
            out["exact"] = list(self._exact)
        else:
            store = self._flush()
            out["zeros"] = self.zeros
            out["bins"] = {str(i + store.offset): c for i, c in enumerate(store.bins) if c}
        return out

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Quantiles:
        q = cls(float(state.get("acc", ACCURACY)), int(state.get("em", EXACT_MAX)))
        q.count = int(state["n"])
        q.sum = float(state["sum"])
        if q.count:
            q.min, q.max = float(state["min"]), float(state["max"])
        if "exact" in state:
            q._exact = [float(v) for v in state["exact"]]
        else:
            q._exact = None
            q.zeros = int(state.get("zeros", 0))
            for key, weight in state.get("bins", {}).items():
                q._bins.add(int(key), float(weight))
        return q

    def summary(self, *quantiles: float) -> dict[str, float | None]:
        """mean and the given quantiles, rounded to 0.1 (the unit is the caller's)."""
        out: dict[str, float | None] = {"mean": _round(self.mean)}
        for q in quantiles:
            out[f"p{round(q * 100)}"] = _round(self.quantile(q))
        return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
