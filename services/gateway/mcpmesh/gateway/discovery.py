"""Which services exist and which of their replicas answer, from NATS itself: every kit
replica registers with `nats.micro`.

- Discovery: `$SRV.INFO` every `interval_s` (and at once, single-flight, when a caller meets a
  name it does not know) lists the replicas of each service with an MCP endpoint on
  `mcp.*.<name>`, and whether each also serves its own subject `mcp.*.<name>.<id>`.
- Health: `$SRV.PING` every `health_interval_s`. A replica that misses two rounds in a row is
  unhealthy (a paused or wedged process cannot answer), and healthy again at its next answer.
- A replica silent for `forget_after_s` is forgotten; a service is known while it has replicas.

`target(name)` is where a request goes: the service's queue subject while every known replica
is healthy (NATS picks), a healthy replica's own subject while some are not (so a paused
replica, whose queue subscription NATS still serves, gets no new work), or `NoHealthyReplica`.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.micro.service import ServiceVerb, control_subject

from mcpmesh.bus import Bus, cancel_until_done
from mcpmesh.proto.ids import InvalidIdentifier, validate_instance_id, validate_service_name
from mcpmesh.proto.subjects import instance_queue_subject, service_queue_subject
from mcpmesh.telemetry.logs import get_logger

log = get_logger("mcpmesh.gateway.discovery")

_MISSES_BEFORE_UNHEALTHY = 2


class NoHealthyReplica(Exception):
    """Replicas of the service are known, and none answered the last health rounds."""


@dataclass
class Replica:
    id: str
    version: str
    routable: bool  # serves its own subject mcp.*.<service>.<id>
    seen_at: float  # monotonic: its last answer to INFO or PING
    misses: int = 0  # health rounds in a row it did not answer

    @property
    def healthy(self) -> bool:
        return self.misses < _MISSES_BEFORE_UNHEALTHY


@dataclass
class ServiceView:
    name: str
    description: str = ""
    replicas: dict[str, Replica] = field(default_factory=dict)

    @property
    def versions(self) -> list[str]:
        return sorted({r.version for r in self.replicas.values()})

    @property
    def healthy(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r.healthy]


async def gather(
    bus: Bus, subject: str, *, window: float = 0.5, quiet: float = 0.1, expect: int | None = None
) -> list[Any] | None:
    """Publish one request and collect every JSON reply for `window` seconds: until `expect`
    replies came, else until `quiet` after the last one. None when not connected."""
    nc = bus.nc
    if not nc.is_connected:
        return None
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    replies: list[Any] = []
    try:
        await nc.publish(subject, b"", reply=inbox)
        deadline = time.monotonic() + window
        while expect is None or len(replies) < expect:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            wait = min(left, quiet) if replies and expect is None else left
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
    def __init__(
        self,
        bus: Bus,
        interval_s: float = 5.0,
        *,
        health_interval_s: float = 1.0,
        forget_after_s: float = 600.0,
    ) -> None:
        self.bus = bus
        self.interval_s = interval_s
        self.health_interval_s = health_interval_s
        self.forget_after_s = forget_after_s
        self.views: dict[str, ServiceView] = {}
        self.rounds = 0  # INFO rounds done
        self.health_rounds = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._refreshing: asyncio.Task[None] | None = None
        self._last_refresh = 0.0

    @property
    def retry_after_s(self) -> int:
        """When a client may try again a service with no healthy replica: by then its health
        was checked again."""
        return max(1, math.ceil(self.health_interval_s * _MISSES_BEFORE_UNHEALTHY))

    def names(self) -> list[str]:
        """Every known service (some replica seen within `forget_after_s`)."""
        return sorted(name for name, view in self.views.items() if view.replicas)

    def has(self, name: str) -> bool:
        view = self.views.get(name)
        return bool(view and view.replicas)

    def target(self, name: str) -> str | None:
        """The replica id to address, or None for the service's queue subject.

        Raises NoHealthyReplica when replicas are known and none of them is healthy."""
        view = self.views.get(name)
        if view is None or not view.replicas:
            return None  # nothing known: NATS decides (no responders is safe to retry)
        healthy = view.healthy
        if not healthy:
            raise NoHealthyReplica(name)
        if len(healthy) == len(view.replicas):
            return None
        routable = [r for r in healthy if r.routable]
        return random.choice(routable).id if routable else None

    def drop(self, name: str, replica: str) -> None:
        """Forget a replica that provably no longer serves (its own subject had no responders)."""
        view = self.views.get(name)
        if view is not None and view.replicas.pop(replica, None) is not None:
            log.info("replica gone", target=name, replica=replica)

    async def start(self) -> None:
        await self.refresh()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._discover_loop()), loop.create_task(self._health_loop())]

    async def stop(self) -> None:
        """Cancel the loops until they are done (`cancel_until_done`: on Python 3.11 a cancel
        racing a reply in nats' `next_msg` was lost, the health loop ran on, the stop hung)."""
        await cancel_until_done([*self._tasks, self._refreshing], what="gateway discovery")
        self._tasks = []

    async def _discover_loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.refresh()
            except Exception as exc:  # never let discovery die; the next round retries
                log.warning("service discovery failed", error=repr(exc))

    async def _health_loop(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.check_health()
            except Exception as exc:
                log.warning("health round failed", error=repr(exc))
            await asyncio.sleep(max(0.0, self.health_interval_s - (time.monotonic() - started)))

    async def refresh_if_older(self, seconds: float) -> None:
        """Refresh unless a round finished within `seconds` (for an unknown name on the hot path);
        joins the round in progress if there is one."""
        if self._refreshing is not None or time.monotonic() - self._last_refresh > seconds:
            await self.refresh()

    async def refresh(self) -> None:
        """One INFO round; concurrent callers share the one in progress (single flight)."""
        task = self._refreshing
        if task is None:
            task = asyncio.get_running_loop().create_task(self._refresh_once())
            self._refreshing = task
            task.add_done_callback(self._refreshed)
        await asyncio.shield(task)

    def _refreshed(self, task: asyncio.Task[None]) -> None:
        if self._refreshing is task:
            self._refreshing = None
        if not task.cancelled():
            task.exception()  # retrieved: a failure reaches the waiters, never "never retrieved"

    async def _refresh_once(self) -> None:
        replies = await gather(self.bus, control_subject(ServiceVerb.INFO))
        now = time.monotonic()
        for info in replies or []:
            found = self._mcp_replica(info)
            if found is None:
                continue
            name, replica_id, routable = found
            view = self.views.setdefault(name, ServiceView(name=name))
            view.description = str(info.get("description") or "")
            replica = view.replicas.get(replica_id)
            if replica is None:
                view.replicas[replica_id] = Replica(
                    replica_id, str(info.get("version", "")), routable, seen_at=now
                )
            else:
                replica.seen_at, replica.misses, replica.routable = now, 0, routable
        self._forget_silent(now)
        self.rounds += 1
        self._last_refresh = time.monotonic()

    async def check_health(self) -> None:
        """One PING round: who answers is healthy; two rounds missed in a row, unhealthy."""
        expected = sum(len(v.replicas) for v in self.views.values())
        replies = await gather(
            self.bus,
            control_subject(ServiceVerb.PING),
            window=self.health_interval_s * 0.75,
            expect=expected or None,
        )
        if replies is None:
            return  # not connected: we learned nothing about the replicas
        now = time.monotonic()
        answered: set[tuple[str, str]] = {
            (str(r.get("name")), str(r.get("id"))) for r in replies if isinstance(r, dict)
        }
        unknown = False
        for name, replica_id in answered:
            view = self.views.get(name)
            replica = view.replicas.get(replica_id) if view is not None else None
            if replica is not None:
                if not replica.healthy:
                    log.info("replica healthy again", target=name, replica=replica_id)
                replica.seen_at, replica.misses = now, 0
            elif name in self.views:
                unknown = True
        for view in self.views.values():
            for replica in view.replicas.values():
                if (view.name, replica.id) not in answered:
                    replica.misses += 1
                    if replica.misses == _MISSES_BEFORE_UNHEALTHY:
                        log.warning(
                            "replica not answering: no new requests", target=view.name, replica=replica.id
                        )
        self._forget_silent(now)
        self.health_rounds += 1
        if unknown:  # a replica started since the last INFO round: learn its endpoints now
            await self.refresh()

    def _forget_silent(self, now: float) -> None:
        for view in self.views.values():
            for replica_id, replica in list(view.replicas.items()):
                if now - replica.seen_at > self.forget_after_s:
                    del view.replicas[replica_id]
                    log.info("replica forgotten", target=view.name, replica=replica_id)

    @staticmethod
    def _mcp_replica(info: Any) -> tuple[str, str, bool] | None:
        """(service, replica id, serves its own subject) of an INFO reply from an MCP service."""
        if not isinstance(info, dict):
            return None
        try:
            name = validate_service_name(info.get("name"))
            replica_id = validate_instance_id(info.get("id"))
        except InvalidIdentifier:
            return None
        subjects = {e.get("subject") for e in info.get("endpoints") or [] if isinstance(e, dict)}
        if service_queue_subject(name) not in subjects:
            return None
        return name, replica_id, instance_queue_subject(name, replica_id) in subjects

    async def health(self) -> dict[str, Any]:
        """Each service: replicas, status, versions and per-replica stats, from a live STATS round."""
        out: dict[str, Any] = {}
        names = sorted(self.views)
        rounds = await asyncio.gather(
            *(gather(self.bus, control_subject(ServiceVerb.STATS, name), window=0.5) for name in names)
        )
        for name, stats in zip(names, rounds, strict=True):
            view = self.views[name]
            mcp_subjects = {service_queue_subject(name)}
            replicas = []
            for item in stats or []:
                if not isinstance(item, dict):
                    continue
                endpoints = [
                    e
                    for e in item.get("endpoints") or []
                    if isinstance(e, dict)
                    and str(e.get("subject", "")).startswith(service_queue_subject(name))
                ]
                shared = next((e for e in endpoints if e.get("subject") in mcp_subjects), {})
                known = view.replicas.get(str(item.get("id")))
                replicas.append(
                    {
                        "id": item.get("id"),
                        "version": item.get("version"),
                        "started": item.get("started"),
                        "healthy": known.healthy if known is not None else True,
                        "requests": sum(int(e.get("num_requests") or 0) for e in endpoints),
                        "errors": sum(int(e.get("num_errors") or 0) for e in endpoints),
                        "average_processing_ms": round((shared.get("average_processing_time") or 0) / 1e6, 3),
                        "data": shared.get("data"),
                    }
                )
            unhealthy = sorted(r.id for r in view.replicas.values() if not r.healthy)
            if not view.healthy:
                status = "down"  # no replica answers health checks
            elif unhealthy or len(replicas) < len(view.replicas):
                status = "degraded"  # some replica known but silent
            else:
                status = "up"
            out[name] = {
                "status": status,
                "replicas": len(replicas) if replicas else len(view.replicas),
                "versions": sorted({str(r["version"]) for r in replicas}) or view.versions,
                "description": view.description,
                "instances": replicas,
                "unhealthy": unhealthy,
            }
        return out
