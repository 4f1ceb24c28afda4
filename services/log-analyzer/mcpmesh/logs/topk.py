"""Bounded, mergeable top-k counting: space-saving with batched eviction.

A `TopK(capacity)` holds at most 2 x capacity keys. When it reaches that, it keeps the
`capacity` largest counts and remembers the largest count it dropped (`floor`); a key seen
after that starts at `floor` (its `error`, how much its count may be over the truth). So a
key's true count lies in [count - error, count], and any key whose true count exceeds `floor`
is present. Each key carries a payload (per-key aggregates, counted from when it was admitted)
that knows how to merge and serialize itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar


class Payload(Protocol):
    def merge(self, other: Any) -> None: ...
    def state(self) -> Any: ...


P = TypeVar("P", bound=Payload)


class Entry(Generic[P]):
    __slots__ = ("count", "error", "payload")

    def __init__(self, count: float, error: float, payload: P) -> None:
        self.count = count
        self.error = error
        self.payload = payload


class TopK(Generic[P]):
    def __init__(self, capacity: int, payload: Callable[[], P], load: Callable[[Any], P]) -> None:
        self.capacity = capacity
        self.floor = 0.0
        self.entries: dict[str, Entry[P]] = {}
        self._new = payload
        self._load = load

    def add(self, key: str, weight: float = 1.0) -> P:
        """Count `key` and return its payload (to update)."""
        entry = self.entries.get(key)
        if entry is None:
            if len(self.entries) >= 2 * self.capacity:
                self._prune()
            entry = self.entries[key] = Entry(self.floor, self.floor, self._new())
        entry.count += weight
        return entry.payload

    def _prune(self) -> None:
        ranked = sorted(self.entries.items(), key=lambda kv: kv[1].count, reverse=True)
        if len(ranked) > self.capacity:
            self.floor = max(self.floor, ranked[self.capacity][1].count)
        self.entries = dict(ranked[: self.capacity])

    def top(self, n: int) -> Iterator[tuple[str, Entry[P]]]:
        """The n keys with the largest counts, largest first."""
        yield from sorted(self.entries.items(), key=lambda kv: (-kv[1].count, kv[0]))[:n]

    def merge(self, other: TopK[P]) -> None:
        for key, theirs in other.entries.items():
            mine = self.entries.get(key)
            if mine is None:
                self.entries[key] = Entry(
                    theirs.count + self.floor, theirs.error + self.floor, theirs.payload
                )
            else:
                mine.count += theirs.count
                mine.error += theirs.error
                mine.payload.merge(theirs.payload)
        for key, mine in self.entries.items():
            if key not in other.entries:
                mine.count += other.floor
                mine.error += other.floor
        self.floor += other.floor
        if len(self.entries) > self.capacity:
            self._prune()

    def state(self) -> dict[str, Any]:
        return {
            "floor": self.floor,
            "keys": [[k, e.count, e.error, e.payload.state()] for k, e in self.entries.items()],
        }

    def load(self, state: dict[str, Any]) -> TopK[P]:
        self.floor = float(state["floor"])
        self.entries = {k: Entry(float(c), float(err), self._load(p)) for k, c, err, p in state["keys"]}
        return self


class Tally:
    """A payload of plain counters (e.g. status code → count)."""

    __slots__ = ("counts",)

    def __init__(self, counts: dict[str, int] | None = None) -> None:
        self.counts: dict[str, int] = counts or {}

    def bump(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def merge(self, other: Tally) -> None:
        for key, n in other.counts.items():
            self.bump(key, n)

    def state(self) -> dict[str, int]:
        return dict(self.counts)

    @classmethod
    def load(cls, state: dict[str, int]) -> Tally:
        return cls({str(k): int(v) for k, v in state.items()})


class Nothing:
    """A payload that carries nothing (a plain top-k count)."""

    __slots__ = ()

    def merge(self, other: Nothing) -> None:
        pass

    def state(self) -> None:
        return None

    @classmethod
    def load(cls, state: Any) -> Nothing:
        return _NOTHING


_NOTHING = Nothing()


def counter(capacity: int) -> TopK[Nothing]:
    """A top-k of plain counts."""
    return TopK(capacity, lambda: _NOTHING, Nothing.load)


def tallies(capacity: int) -> TopK[Tally]:
    """A top-k whose keys each carry a Tally."""
    return TopK(capacity, Tally, Tally.load)
