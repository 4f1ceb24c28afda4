"""What the service's parts share: settings and the kit's service (the lifespan's state).

The caller's own data is `call.store` / `call.vectors`; another org's (a grant's owner, the
system org) only what `call.shared` returns after a check (see access.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from mcpmesh.rag.settings import RagSettings
from mcpmesh.service import Lifespan, MeshService
from mcpmesh.store import TenantStore


@dataclass
class RagApp:
    service: MeshService
    settings: RagSettings


class Caller(Protocol):
    """A tool call (`Call`) or a job (`JobContext`): both call other services as their org."""

    @property
    def org_id(self) -> str: ...

    @property
    def tier(self) -> str: ...

    @property
    def store(self) -> TenantStore: ...

    async def call_tool(
        self, service: str, tool: str, arguments: Mapping[str, Any], *, on_progress: Any = ...
    ) -> dict[str, Any]: ...


def utcnow() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def lifespan_for(settings: RagSettings) -> Lifespan:
    @contextlib.asynccontextmanager
    async def lifespan(service: MeshService) -> AsyncIterator[RagApp]:
        yield RagApp(service=service, settings=settings)

    return lifespan
