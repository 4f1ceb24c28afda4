"""Which services exist, from NATS itself: every kit replica registers with `nats.micro`.

A background loop asks `$SRV.INFO` every few seconds and keeps the services that have an
MCP endpoint on `mcp.*.<name>`. A service that stops answering is dropped only after
missing three rounds in a row (a busy replica may answer late). `/health/services` adds a
`$SRV.STATS.<name>` round for live numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.micro.service import ServiceVerb, control_subject

from mcpmesh.bus import Bus
from mcpmesh.proto.ids import InvalidIdentifier, validate_service_name
from mcpmesh.proto.subjects import service_queue_subject
from mcpmesh.telemetry.logs import get_logger

log = get_logger("mcpmesh.gateway.discovery")

_MISSES_BEFORE_GONE = 3


@dataclass
class Replica:
    id: str
    version: str
    seen_at: float


@dataclass
class ServiceView:
    name: str
    description: str = ""
    replicas: dict[str, Replica] = field(default_factory=dict)
    misses: int = 0

    @property
    def versions(self) -> list[str]:
        return sorted({r.version for r in self.replicas.values()})


async def gather(bus: Bus, subject: str, *, window: float = 0.5, quiet: float = 0.1) -> list[Any]:
    """Publish one request and collect every JSON reply for `window` seconds, or `quiet` after the last one."""
    nc = bus.nc
    if not nc.is_connected:
        return []
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    replies: list[Any] = []
    try:
        await nc.publish(subject, b"", reply=inbox)
        deadline = time.monotonic() + window
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            wait = min(left, quiet) if replies else left
            try:
                msg = await sub.next_msg(timeout=wait)
            except TimeoutError:
                break
            except Exception:  # nats timeout class, connection closing
                break
            try:
                replies.append(msgspec.json.decode(msg.data))
            except msgspec.DecodeError:
                continue
    finally:
        try:
            await sub.unsubscribe()
        except Exception as exc:  # connection closed meanwhile
            log.debug("discovery unsubscribe failed", error=repr(exc))
    return replies


class Discovery:
    def __init__(self, bus: Bus, interval_s: float = 5.0) -> None:
        self.bus = bus
        self.interval_s = interval_s
        self.views: dict[str, ServiceView] = {}
        self.rounds = 0
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._last_refresh = 0.0

    def names(self) -> list[str]:
        return sorted(name for name, view in self.views.items() if view.replicas)

    def has(self, name: str) -> bool:
        view = self.views.get(name)
        return bool(view and view.replicas)

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.refresh()
            except Exception as exc:  # never let discovery die; the next round retries
                log.warning("service discovery failed", error=repr(exc))

    async def refresh_if_older(self, seconds: float) -> None:
        """Refresh now unless a round finished within `seconds` (for an unknown name on the hot path)."""
        if time.monotonic() - self._last_refresh > seconds:
            await self.refresh()

    async def refresh(self) -> None:
        async with self._lock:
            replies = await gather(self.bus, control_subject(ServiceVerb.INFO))
            now = time.time()
            seen: dict[str, dict[str, Replica]] = {}
            descriptions: dict[str, str] = {}
            for info in replies:
                name = self._mcp_service_name(info)
                if name is None:
                    continue
                replica = Replica(
                    id=str(info.get("id", "")), version=str(info.get("version", "")), seen_at=now
                )
                seen.setdefault(name, {})[replica.id] = replica
                descriptions[name] = str(info.get("description") or "")
            for name, replicas in seen.items():
                view = self.views.setdefault(name, ServiceView(name=name))
                view.replicas = replicas
                view.description = descriptions.get(name, "")
                view.misses = 0
            for name, view in list(self.views.items()):
                if name not in seen:
                    view.misses += 1
                    if view.misses >= _MISSES_BEFORE_GONE:
                        view.replicas = {}
            self.rounds += 1
            self._last_refresh = time.monotonic()

    @staticmethod
    def _mcp_service_name(info: Any) -> str | None:
        if not isinstance(info, dict):
            return None
        try:
            name = validate_service_name(info.get("name"))
        except InvalidIdentifier:
            return None
        subject = service_queue_subject(name)
        endpoints = info.get("endpoints") or []
        if not any(isinstance(e, dict) and e.get("subject") == subject for e in endpoints):
            return None
        return name

    async def health(self) -> dict[str, Any]:
        """Each service: replicas, status, versions and per-replica stats, from a live STATS round."""
        out: dict[str, Any] = {}
        names = sorted(self.views)
        rounds = await asyncio.gather(
            *(gather(self.bus, control_subject(ServiceVerb.STATS, name), window=0.5) for name in names)
        )
        for name, stats in zip(names, rounds, strict=True):
            view = self.views[name]
            replicas = []
            for item in stats:
                if not isinstance(item, dict):
                    continue
                endpoint = next(
                    (
                        e
                        for e in item.get("endpoints") or []
                        if isinstance(e, dict) and e.get("subject") == service_queue_subject(name)
                    ),
                    {},
                )
                replicas.append(
                    {
                        "id": item.get("id"),
                        "version": item.get("version"),
                        "started": item.get("started"),
                        "requests": endpoint.get("num_requests"),
                        "errors": endpoint.get("num_errors"),
                        "average_processing_ms": round(
                            (endpoint.get("average_processing_time") or 0) / 1e6, 3
                        ),
                        "data": endpoint.get("data"),
                    }
                )
            if replicas:
                status = "up"
            elif view.replicas:
                status = "degraded"  # known from INFO but silent to STATS just now
            else:
                status = "down"
            out[name] = {
                "status": status,
                "replicas": len(replicas) if replicas else len(view.replicas),
                "versions": sorted({str(r["version"]) for r in replicas}) or view.versions,
                "description": view.description,
                "instances": replicas,
            }
        return out
