"""One streaming pass over log lines → every figure of a report, in memory bounded by `Limits`.

`Analysis.feed(raw_line)` takes one JSON line (bytes); `LineSplitter` cuts a byte stream into
lines. Every part is mergeable (`merge`, `state`/`from_state`), so blobs and replicas can work
apart and combine. `report()` renders the figures (see README "Reports").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Final

from mcpmesh.logs import classify
from mcpmesh.logs.lines import CONSOLE_CATEGORY, HttpProps, Line, Malformed, Minutes, decode, minute_iso
from mcpmesh.logs.series import Series
from mcpmesh.logs.sketch import Quantiles
from mcpmesh.logs.topk import Tally, TopK, counter, tallies

KEY_MAX: Final = 300  # paths, user agents and ips are cut to this many characters


@dataclass(frozen=True)
class Limits:
    """Bounds on what one analysis keeps (its memory); see topk.py for what a capacity means."""

    paths: int = 500
    error_paths: int = 200
    clients: int = 100
    user_agents: int = 100
    signatures: int = 200
    crawler_paths: int = 20
    series_buckets: int = 1440
    malformed_samples: int = 5
    max_line_bytes: int = 64 * 1024


class PathStats:
    __slots__ = ("errors", "requests", "statuses", "time_max", "time_sum")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.time_sum = 0.0
        self.time_max = 0.0
        self.statuses = Tally()

    def merge(self, other: PathStats) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.time_sum += other.time_sum
        self.time_max = max(self.time_max, other.time_max)
        self.statuses.merge(other.statuses)

    def state(self) -> list[Any]:
        return [self.requests, self.errors, self.time_sum, self.time_max, self.statuses.state()]

    @classmethod
    def load(cls, state: list[Any]) -> PathStats:
        stats = cls()
        stats.requests, stats.errors = int(state[0]), int(state[1])
        stats.time_sum, stats.time_max = float(state[2]), float(state[3])
        stats.statuses = Tally.load(state[4])
        return stats


class Signature:
    __slots__ = ("first", "last", "level", "sample")

    def __init__(self, level: str = "", sample: str = "", first: int = 0, last: int = 0) -> None:
        self.level, self.sample, self.first, self.last = level, sample, first, last

    def merge(self, other: Signature) -> None:
        if other.first and (not self.first or other.first < self.first):
            self.first, self.sample, self.level = other.first, other.sample, other.level
        self.last = max(self.last, other.last)

    def state(self) -> list[Any]:
        return [self.level, self.sample, self.first, self.last]

    @classmethod
    def load(cls, state: list[Any]) -> Signature:
        return cls(str(state[0]), str(state[1]), int(state[2]), int(state[3]))


class Crawler:
    __slots__ = ("paths", "requests", "successes")

    def __init__(self, path_capacity: int) -> None:
        self.requests = 0
        self.successes = 0
        self.paths = counter(path_capacity)

    def merge(self, other: Crawler) -> None:
        self.requests += other.requests
        self.successes += other.successes
        self.paths.merge(other.paths)


class Analysis:
    """Accumulates one or many inputs; `since`/`until` (Unix minutes, until exclusive) filter lines."""

    def __init__(
        self, limits: Limits | None = None, since: int | None = None, until: int | None = None
    ) -> None:
        self.limits = limits = limits or Limits()
        self.since, self.until = since, until
        self.counts = {"lines": 0, "http": 0, "console": 0, "other": 0, "malformed": 0, "out_of_range": 0}
        self.malformed_samples: list[dict[str, Any]] = []
        self.first_minute: int | None = None
        self.last_minute: int | None = None
        self.statuses: dict[int, int] = {}
        self.latency = Quantiles()
        self.bytes_sent = 0
        self.series = Series(limits.series_buckets)
        self.paths: TopK[PathStats] = TopK(limits.paths, PathStats, PathStats.load)
        self.error_paths = tallies(limits.error_paths)
        self.clients = counter(limits.clients)
        self.user_agents = counter(limits.user_agents)
        self.crawlers: dict[str, Crawler] = {}
        self.console_errors = 0
        self.signatures: TopK[Signature] = TopK(limits.signatures, Signature, Signature.load)
        self._minutes = Minutes()
        self._crawler_of = classify.Crawlers()

    # -- feeding ------------------------------------------------------------------------------

    def feed(self, raw: bytes) -> None:
        """One line (without its newline). Blank lines are skipped; bad ones counted and sampled."""
        if not raw.strip():
            return
        self.counts["lines"] += 1
        try:
            line, http = decode(raw)
            minute = self._minutes(line.time)
        except Malformed as bad:
            self._malformed(raw, bad.reason)
            return
        if (self.since is not None and minute < self.since) or (
            self.until is not None and minute >= self.until
        ):
            self.counts["out_of_range"] += 1
            return
        if self.first_minute is None or minute < self.first_minute:
            self.first_minute = minute
        if self.last_minute is None or minute > self.last_minute:
            self.last_minute = minute
        if http is not None:
            self._http(minute, http)
        elif line.category == CONSOLE_CATEGORY or line.resultDescription:
            self._console(minute, line)
        else:
            self.counts["other"] += 1

    def feed_all(self, lines: Iterable[bytes]) -> Analysis:
        for raw in lines:
            self.feed(raw)
        return self

    def _malformed(self, raw: bytes, reason: str) -> None:
        self.counts["malformed"] += 1
        if len(self.malformed_samples) < self.limits.malformed_samples:
            excerpt = raw[:160].decode("utf-8", "replace")
            self.malformed_samples.append(
                {"line": self.counts["lines"], "reason": reason, "excerpt": excerpt}
            )

    def _http(self, minute: int, p: HttpProps) -> None:
        self.counts["http"] += 1
        status, taken = p.ScStatus, p.TimeTaken
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.latency.add(taken)
        self.bytes_sent += p.ScBytes
        error = status >= 400
        path = p.CsUriStem[:KEY_MAX] or "/"
        stats = self.paths.add(path)
        stats.requests += 1
        stats.time_sum += taken
        if taken > stats.time_max:
            stats.time_max = taken
        stats.statuses.bump(str(status))
        bucket = self.series.bucket(minute)
        bucket.requests += 1
        bucket.latency.add(taken)
        if error:
            stats.errors += 1
            bucket.errors += 1
            if status >= 500:
                bucket.server_errors += 1
            self.error_paths.add(path).bump(str(status))
        self.clients.add(p.CIp[:KEY_MAX] or "(none)")
        agent = p.UserAgent[:KEY_MAX] or "(none)"
        self.user_agents.add(agent)
        name = self._crawler_of(agent)
        if name is not None:
            crawler = self.crawlers.get(name)
            if crawler is None:
                crawler = self.crawlers[name] = Crawler(self.limits.crawler_paths)
            crawler.requests += 1
            crawler.successes += not error
            crawler.paths.add(path)

    def _console(self, minute: int, line: Line) -> None:
        self.counts["console"] += 1
        if not classify.console_error(line.level, line.resultDescription):
            return
        self.console_errors += 1
        sig = self.signatures.add(classify.signature(line.resultDescription) or "(empty)")
        if not sig.first:
            sig.first, sig.level, sig.sample = minute, line.level, line.resultDescription[:500]
        sig.last = max(sig.last, minute)

    # -- merging and state --------------------------------------------------------------------

    def merge(self, other: Analysis) -> Analysis:
        for key, n in other.counts.items():
            self.counts[key] += n
        room = self.limits.malformed_samples - len(self.malformed_samples)
        self.malformed_samples.extend(other.malformed_samples[: max(room, 0)])
        for mine, theirs in (("first_minute", min), ("last_minute", max)):
            values = [v for v in (getattr(self, mine), getattr(other, mine)) if v is not None]
            setattr(self, mine, theirs(values) if values else None)
        for status, n in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + n
        self.latency.merge(other.latency)
        self.bytes_sent += other.bytes_sent
        self.series.merge(other.series)
        self.paths.merge(other.paths)
        self.error_paths.merge(other.error_paths)
        self.clients.merge(other.clients)
        self.user_agents.merge(other.user_agents)
        for name, crawler in other.crawlers.items():
            if name in self.crawlers:
                self.crawlers[name].merge(crawler)
            else:
                self.crawlers[name] = crawler
        self.console_errors += other.console_errors
        self.signatures.merge(other.signatures)
        return self

    def state(self) -> dict[str, Any]:
        """JSON-safe state; `Analysis.from_state` rebuilds an equal analysis (to merge later)."""
        return {
            "limits": asdict(self.limits),
            "since": self.since,
            "until": self.until,
            "counts": dict(self.counts),
            "malformed_samples": list(self.malformed_samples),
            "first_minute": self.first_minute,
            "last_minute": self.last_minute,
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "latency": self.latency.state(),
            "bytes_sent": self.bytes_sent,
            "series": self.series.state(),
            "paths": self.paths.state(),
            "error_paths": self.error_paths.state(),
            "clients": self.clients.state(),
            "user_agents": self.user_agents.state(),
            "crawlers": {
                name: [c.requests, c.successes, c.paths.state()] for name, c in self.crawlers.items()
            },
            "console_errors": self.console_errors,
            "signatures": self.signatures.state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Analysis:
        a = cls(Limits(**state["limits"]), state.get("since"), state.get("until"))
        a.counts.update({k: int(v) for k, v in state["counts"].items()})
        a.malformed_samples = list(state["malformed_samples"])
        a.first_minute, a.last_minute = state["first_minute"], state["last_minute"]
        a.statuses = {int(k): int(v) for k, v in state["statuses"].items()}
        a.latency = Quantiles.from_state(state["latency"])
        a.bytes_sent = int(state["bytes_sent"])
        a.series.load(state["series"])
        a.paths.load(state["paths"])
        a.error_paths.load(state["error_paths"])
        a.clients.load(state["clients"])
        a.user_agents.load(state["user_agents"])
        for name, (requests, successes, paths) in state["crawlers"].items():
            crawler = a.crawlers[name] = Crawler(a.limits.crawler_paths)
            crawler.requests, crawler.successes = int(requests), int(successes)
            crawler.paths.load(paths)
        a.console_errors = int(state["console_errors"])
        a.signatures.load(state["signatures"])
        return a

    # -- the report ---------------------------------------------------------------------------

    @property
    def requests(self) -> int:
        return self.counts["http"]

    def report(self, top: int = 20, series_points: int = 240) -> dict[str, Any]:
        """Every figure, JSON-safe. `top` bounds each list; the series shows its last points."""
        from mcpmesh.logs.report import render

        return render(self, top=top, series_points=series_points)


class LineSplitter:
    """Cuts a byte stream (chunks) into lines; a line longer than `max_bytes` is reported as
    too long and skipped to its end, so memory stays bounded by `max_bytes`."""

    def __init__(self, analysis: Analysis) -> None:
        self.analysis = analysis
        self._rest = b""
        self._skipping = False

    def feed(self, chunk: bytes) -> None:
        data = self._rest + chunk if self._rest else chunk
        start = 0
        feed = self.analysis.feed
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            if self._skipping:
                self._skipping = False
            else:
                feed(data[start:end])
            start = end + 1
        self._rest = data[start:]
        if len(self._rest) > self.analysis.limits.max_line_bytes:
            if not self._skipping:
                self.analysis.counts["lines"] += 1
                self.analysis._malformed(
                    self._rest, f"line longer than {self.analysis.limits.max_line_bytes} bytes"
                )
            self._skipping = True
            self._rest = b""

    def close(self) -> None:
        if self._rest and not self._skipping:
            self.analysis.feed(self._rest)
        self._rest, self._skipping = b"", False


__all__ = ["Analysis", "Limits", "LineSplitter", "minute_iso"]
