"""Generated App Service logs with known ground truth, in the real blob layout.

Used by the tests (every figure is checked against `Truth`), the benchmark and `./mesh up`'s
demo container. Deterministic for a given `DemoSpec` (seeded).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from mcpmesh.logs.lines import CONSOLE_CATEGORY, HTTP_CATEGORY

RESOURCE: Final = (
    "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/DEMO-RG"
    "/PROVIDERS/MICROSOFT.WEB/SITES/{site}"
)
PATHS: Final = ("/", "/products/list", "/api/search", "/about", "/api/cart")
SLOW_PATH: Final = "/reports/export"
BURST_PATH: Final = "/api/checkout"
BROWSER: Final = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
CRAWLER_AGENTS: Final = {
    "GPTBot": "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
    "ClaudeBot": "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)",
}


def blob_name(site: str, hour: datetime) -> str:
    """`resourceId=/SUBSCRIPTIONS/…/SITES/<site>/y=YYYY/m=MM/d=DD/h=HH/m=00/PT1H.json`."""
    return f"resourceId={RESOURCE.format(site=site.upper())}/y={hour:%Y}/m={hour:%m}/d={hour:%d}/h={hour:%H}/m=00/PT1H.json"


@dataclass(frozen=True)
class DemoSpec:
    start: datetime = datetime(2026, 11, 30, 9, tzinfo=UTC)
    hours: int = 2
    per_minute: int = 60
    seed: int = 7
    #: Minutes (from start) with a burst of 500s on BURST_PATH: [first, last).
    burst: tuple[int, int] | None = (70, 80)
    burst_share: float = 0.6
    crawler_share: float = 0.05
    #: Added to every TimeTaken (a slower candidate for compare).
    extra_ms: float = 0.0
    #: Minutes (from start) where every request takes `slow_ms` longer: [first, last).
    slow: tuple[int, int] | None = None
    slow_ms: float = 400.0
    #: Every this many minutes one console error (and one informational line every minute).
    console_error_every: int = 10
    site: str = "demo-site"
    #: One line in this many has properties as a JSON string (the other shape).
    string_props_every: int = 4


@dataclass
class Truth:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    crawler_requests: Counter[str] = field(default_factory=Counter)
    crawler_successes: Counter[str] = field(default_factory=Counter)
    path_time: dict[str, float] = field(default_factory=dict)
    path_requests: Counter[str] = field(default_factory=Counter)
    console_lines: int = 0
    console_errors: int = 0

    @property
    def errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s >= 400)


def http_line(
    when: datetime, path: str, status: int, taken: float, agent: str, ip: str, as_string: bool
) -> bytes:
    props = {
        "CsMethod": "GET",
        "CsUriStem": path,
        "CsUriQuery": "",
        "CsHost": "demo.example.com",
        "SPort": "443",
        "CIp": ip,
        "UserAgent": agent,
        "Referer": "",
        "Cookie": "",
        "CsUsername": "",
        "ScStatus": status,
        "ScSubStatus": "0",
        "ScWin32Status": "0",
        "ScBytes": 1234,
        "CsBytes": 321,
        "TimeTaken": int(taken),
        "Result": "Success" if status < 400 else "Failure",
        "ComputerName": "RD0001",
    }
    line = {
        "time": when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z",
        "resourceId": RESOURCE.format(site="DEMO-SITE"),
        "category": HTTP_CATEGORY,
        "properties": json.dumps(props) if as_string else props,
    }
    return json.dumps(line).encode()


def console_line(when: datetime, level: str, text: str) -> bytes:
    line = {
        "time": when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z",
        "resourceId": RESOURCE.format(site="DEMO-SITE"),
        "category": CONSOLE_CATEGORY,
        "level": level,
        "resultDescription": text,
        "properties": {"ContainerId": "abc123", "Host": "RD0001"},
    }
    return json.dumps(line).encode()


def generate(spec: DemoSpec, truth: Truth | None = None) -> Iterator[tuple[datetime, bytes]]:
    """(hour, line) for every line, in time order; fills `truth` when given."""
    rng = random.Random(spec.seed)
    n = 0
    for minute in range(spec.hours * 60):
        at = spec.start + timedelta(minutes=minute)
        hour = at.replace(minute=0)
        in_burst = spec.burst is not None and spec.burst[0] <= minute < spec.burst[1]
        for i in range(spec.per_minute):
            when = at + timedelta(seconds=60 * i / spec.per_minute)
            n += 1
            crawler = None
            if rng.random() < spec.crawler_share:
                crawler = "GPTBot" if rng.random() < 0.6 else "ClaudeBot"
            if in_burst and rng.random() < spec.burst_share:
                path, status, taken = BURST_PATH, 500, 40 + rng.random() * 50
            elif rng.random() < 0.01:
                path, status, taken = SLOW_PATH, 200, 1500 + rng.random() * 1000
            else:
                path = rng.choice(PATHS)
                roll = rng.random()
                status = 404 if roll < 0.02 else 500 if roll < 0.025 else 200
                taken = 5 + rng.expovariate(1 / 80)
            in_slow = spec.slow is not None and spec.slow[0] <= minute < spec.slow[1]
            taken = float(int(taken + spec.extra_ms + (spec.slow_ms if in_slow else 0.0)))
            agent = CRAWLER_AGENTS[crawler] if crawler else BROWSER
            ip = f"10.1.{rng.randrange(4)}.{rng.randrange(50)}"
            if truth is not None:
                truth.requests += 1
                truth.statuses[status] += 1
                truth.latencies.append(taken)
                truth.path_time[path] = truth.path_time.get(path, 0.0) + taken
                truth.path_requests[path] += 1
                if crawler:
                    truth.crawler_requests[crawler] += 1
                    truth.crawler_successes[crawler] += status < 400
            yield hour, http_line(when, path, status, taken, agent, ip, n % spec.string_props_every == 0)
        yield (
            hour,
            console_line(at, "Informational", f"Request pipeline warm, {rng.randrange(100)} items cached"),
        )
        if truth is not None:
            truth.console_lines += 1
        if spec.console_error_every and minute % spec.console_error_every == 0:
            order = rng.randrange(10_000, 99_999)
            text = (
                f"Unhandled exception in OrderService for order {order} "
                f"(correlation {rng.getrandbits(128):032x}): timeout after 30000 ms"
            )
            yield hour, console_line(at, "Error", text)
            if truth is not None:
                truth.console_lines += 1
                truth.console_errors += 1


def hourly_blobs(spec: DemoSpec, truth: Truth | None = None) -> Iterator[tuple[str, bytes]]:
    """(blob name, JSON Lines content) per hour: what an App Service writes to its log container."""
    current: datetime | None = None
    lines: list[bytes] = []
    for hour, line in generate(spec, truth):
        if current is not None and hour != current:
            yield blob_name(spec.site, current), b"\n".join(lines) + b"\n"
            lines = []
        current = hour
        lines.append(line)
    if current is not None:
        yield blob_name(spec.site, current), b"\n".join(lines) + b"\n"
