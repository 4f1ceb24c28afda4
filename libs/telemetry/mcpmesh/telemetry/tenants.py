"""The `org_id` label of per-tenant metrics, capped: the top N tenants by traffic, everyone else `other`.

Policy (one `TenantLabels` per process; unauthenticated requests, org "-", keep "-" outside the cap):
- Until `max_tenants` orgs hold a label, a new org gets one at once (the first N seen).
- Every `window_s`, the holders become the N orgs with the most calls in the window just ended
  (ties keep the current holder). An org that loses its label has its series removed from
  every per-tenant family; from then on its calls count under `other`.

Why Prometheus counters stay correct: a label set's value is only ever incremented while it
exists, and `other` is never removed, so every series is monotonic. A removed series goes
stale; if the org wins a label back later, its series starts again from 0, which Prometheus
reads as a counter reset, exactly like a process restart, so `rate()` and `increase()` stay
right. Each call is counted once (under its org or under `other`), so
`sum by (service) (rate(...))` is the true total at any time.
"""

from __future__ import annotations

import heapq
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["OTHER", "UNKNOWN", "MetricsSettings", "TenantLabels"]

#: The label of every org that does not hold one of the N tenant labels.
OTHER = "other"
#: The org of a request that was not authenticated: always its own label, outside the cap.
UNKNOWN = "-"
#: Orgs counted per window at most (memory bound); later new orgs in the window rank as 0.
_MAX_COUNTED = 100_000


@dataclass(frozen=True)
class MetricsSettings:
    """Metrics configuration of any mcpmesh process (MCPMESH_METRICS_*)."""

    max_tenants: int = 100  # orgs with their own org_id label; the rest are `other`
    tenant_window_s: float = 3600.0  # how often the labelled orgs are re-ranked by traffic
    port: int | None = None  # a service's /metrics port, 0 any free one (the gateway serves /metrics itself)
    host: str = "0.0.0.0"  # a scrape target must be reachable by Prometheus

    def __post_init__(self) -> None:
        if self.max_tenants < 0:
            raise ValueError(f"MCPMESH_METRICS_MAX_TENANTS must be 0 or more (got {self.max_tenants})")
        if self.tenant_window_s <= 0:
            raise ValueError(
                f"MCPMESH_METRICS_TENANT_WINDOW_S must be positive (got {self.tenant_window_s:g})"
            )
        if self.port is not None and not 0 <= self.port < 65536:
            raise ValueError(f"MCPMESH_METRICS_PORT must be a TCP port, 0-65535 (got {self.port})")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MetricsSettings:
        """Read MCPMESH_METRICS_*; a bad value raises ValueError naming the variable."""
        source = os.environ if environ is None else environ

        def env(name: str) -> str | None:
            value = source.get(name, "").strip()
            return value or None

        try:
            port = env("MCPMESH_METRICS_PORT")
            return cls(
                max_tenants=int(env("MCPMESH_METRICS_MAX_TENANTS") or cls.max_tenants),
                tenant_window_s=float(env("MCPMESH_METRICS_TENANT_WINDOW_S") or cls.tenant_window_s),
                port=int(port) if port else None,
                host=env("MCPMESH_METRICS_HOST") or cls.host,
            )
        except ValueError as exc:
            raise ValueError(f"bad MCPMESH_METRICS_* setting: {exc}") from None


class TenantLabels:
    """Maps an org id to its metric label: itself while it holds one of the N labels, else `other`."""

    def __init__(
        self,
        settings: MetricsSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_dropped: Callable[[frozenset[str]], None] | None = None,
    ) -> None:
        settings = settings or MetricsSettings()
        self.max_tenants = settings.max_tenants
        self.window_s = settings.tenant_window_s
        self.held: set[str] = set()
        self.generation = 0  # bumped whenever `held` loses an org (cached label children are stale)
        self._clock = clock
        self._on_dropped = on_dropped
        self._window_end = clock() + self.window_s
        self._counts: Counter[str] = Counter()

    def label(self, org_id: str, *, count: bool = True) -> str:
        """The label to record `org_id` under; `count` one call of it in the current window's ranking."""
        if org_id == UNKNOWN:
            return UNKNOWN
        if self._clock() >= self._window_end:
            self._rerank()
        if count and (org_id in self._counts or len(self._counts) < _MAX_COUNTED):
            self._counts[org_id] += 1
        if org_id in self.held:
            return org_id
        if len(self.held) < self.max_tenants:
            self.held.add(org_id)
            return org_id
        return OTHER

    def _rerank(self) -> None:
        held = self.held
        counts = self._counts
        top = set(heapq.nlargest(self.max_tenants, counts, key=lambda org: (counts[org], org in held)))
        # Holders idle for the whole window keep their label while there is room.
        for org in sorted(held - top):
            if len(top) >= self.max_tenants:
                break
            top.add(org)
        dropped = frozenset(held - top)
        self.held = top
        self._counts = Counter()
        self._window_end = self._clock() + self.window_s
        if dropped:
            self.generation += 1
            if self._on_dropped is not None:
                self._on_dropped(dropped)
