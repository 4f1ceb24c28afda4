"""Every service's tools, fetched over the bus, cached briefly, filtered per key.

A service's tool list is the same for every org, so one cached copy serves all callers for
`MCPMESH_CATALOG_TTL_S`; past that the stale copy is still served while one refresh runs
in the background (fetched with the stamp of the caller that noticed, who is allowed to
list that service). What a key sees is then filtered by:

- scope: each tool names the scope it needs in `_meta["mcpmesh/scope"]` (the kit publishes
  it); a tool without one is treated conservatively as needing `<service>:read` when it is
  annotated `readOnlyHint`, else `<service>:write`;
- tier: a tool may list the tiers it is offered on in `_meta["mcpmesh/tiers"]`; without it,
  every tier.

A tool's `_meta["mcpmesh/budget_s"]` bounds how long the gateway waits for one call of it;
`_meta["mcpmesh/job"]` marks a job tool (offered as an MCP task, see tasks.py).

Its annotations (`readOnlyHint`, `idempotentHint`) and `_meta["mcpmesh/idempotency_key"]` only
decide what a client is told when a call times out (may it simply retry?): the gateway itself
never sends a call twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from mcp.shared.inbound import find_invalid_x_mcp_header, x_mcp_header_map

from mcpmesh.service import TOOL_BUDGET_META, TOOL_IDEMPOTENCY_KEY_META, TOOL_SCOPE_META
from mcpmesh.service.jobs import TOOL_JOB_META
from mcpmesh.telemetry.logs import get_logger
from mcpmesh.tenancy.scopes import covers, scope_for

log = get_logger("mcpmesh.gateway.catalog")

#: Key of a tool's `_meta` entry listing the tiers it is offered on (absent: all tiers).
TOOL_TIERS_META: Final = "mcpmesh/tiers"


@dataclass(frozen=True)
class ToolEntry:
    service: str
    name: str  # as the service names it
    raw: dict[str, Any]  # the tool as the service lists it
    scope: str
    tiers: tuple[str, ...] | None
    repeatable: bool  # read-only or idempotent: running it again changes nothing more
    idempotency_key: str | None  # the argument it deduplicates on, if it declares one
    param_headers: bool  # its inputSchema declares Mcp-Param-* headers
    budget_s: float | None = None  # seconds one call may take (`_meta["mcpmesh/budget_s"]`)
    job: bool = False  # a durable job tool (`_meta["mcpmesh/job"]`): its call starts a job

    @property
    def input_schema(self) -> Any:
        return self.raw.get("inputSchema")

    def offered_on(self, tier: str) -> bool:
        return self.tiers is None or tier in self.tiers

    def visible_to(self, scopes: tuple[str, ...], tier: str) -> bool:
        return covers(scopes, self.scope) and self.offered_on(tier)


def tool_entry(service: str, raw: dict[str, Any]) -> ToolEntry | None:
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        return None
    meta = raw.get("_meta") if isinstance(raw.get("_meta"), dict) else {}
    annotations = raw.get("annotations") if isinstance(raw.get("annotations"), dict) else {}
    assert isinstance(meta, dict) and isinstance(annotations, dict)
    read_only = annotations.get("readOnlyHint") is True
    scope = meta.get(TOOL_SCOPE_META)
    if not isinstance(scope, str) or not scope:
        scope = scope_for(service, "read" if read_only else "write")
    tiers = meta.get(TOOL_TIERS_META)
    tier_tuple = tuple(t for t in tiers if isinstance(t, str)) if isinstance(tiers, list) else None
    schema = raw.get("inputSchema")
    param_headers = find_invalid_x_mcp_header(schema) is None and bool(x_mcp_header_map(schema))
    return ToolEntry(
        service=service,
        name=name,
        raw=raw,
        scope=scope,
        tiers=tier_tuple,
        repeatable=read_only or annotations.get("idempotentHint") is True,
        idempotency_key=key if isinstance(key := meta.get(TOOL_IDEMPOTENCY_KEY_META), str) and key else None,
        param_headers=param_headers,
        budget_s=_budget(meta.get(TOOL_BUDGET_META)),
        job=isinstance(meta.get(TOOL_JOB_META), dict),
    )


def _budget(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
    return float(value) if ok else None


def can_list(scopes: tuple[str, ...], service: str) -> bool:
    """Listing a service needs some scope on it (what the kit itself requires)."""
    return covers(scopes, scope_for(service, "read")) or covers(scopes, scope_for(service, "write"))


@dataclass
class ServiceTools:
    service: str
    tools: dict[str, ToolEntry]
    order: list[str]  # names in the service's own order
    fetched_at: float

    @property
    def has_jobs(self) -> bool:
        return any(entry.job for entry in self.tools.values())


Fetcher = Callable[[str, Any], Awaitable[list[dict[str, Any]]]]


class Catalog:
    def __init__(self, fetch: Fetcher, ttl_s: float = 30.0) -> None:
        self.fetch = fetch
        self.ttl_s = ttl_s
        self._by_service: dict[str, ServiceTools] = {}
        self._inflight: dict[str, asyncio.Future[ServiceTools]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.fetches = 0

    def cached(self, service: str) -> ServiceTools | None:
        return self._by_service.get(service)

    async def tools(self, service: str, principal: Any, *, force: bool = False) -> ServiceTools:
        """The service's tools; raises what the fetch raises when nothing is cached."""
        cached = self._by_service.get(service)
        if cached is not None and not force:
            if time.monotonic() - cached.fetched_at > self.ttl_s and service not in self._inflight:
                task = asyncio.get_running_loop().create_task(self._refresh_quietly(service, principal))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            return cached
        return await self._refresh(service, principal)

    async def _refresh_quietly(self, service: str, principal: Any) -> None:
        try:
            await self._refresh(service, principal)
        except Exception as exc:  # the stale copy keeps serving
            log.warning("tool list refresh failed", target=service, error=repr(exc))

    async def _refresh(self, service: str, principal: Any) -> ServiceTools:
        pending = self._inflight.get(service)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[ServiceTools] = asyncio.get_running_loop().create_future()
        self._inflight[service] = future
        try:
            raw_tools = await self.fetch(service, principal)
            self.fetches += 1
            tools: dict[str, ToolEntry] = {}
            order: list[str] = []
            for raw in raw_tools:
                entry = tool_entry(service, raw) if isinstance(raw, dict) else None
                if entry is not None and entry.name not in tools:
                    tools[entry.name] = entry
                    order.append(entry.name)
            result = ServiceTools(service=service, tools=tools, order=order, fetched_at=time.monotonic())
            self._by_service[service] = result
            future.set_result(result)
            return result
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody is left unobserved
            raise
        finally:
            del self._inflight[service]

    def forget(self, service: str) -> None:
        self._by_service.pop(service, None)
