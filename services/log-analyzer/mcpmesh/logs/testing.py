"""Test helpers: the log-analyzer on a ServiceHarness with sources in an Azurite (tests, bench)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mcpmesh.service.testing import ServiceHarness

if TYPE_CHECKING:
    from mcpmesh.dev.azuriteproc import LocalAzurite

ORG_A = "org-acme"
ORG_B = "org-globex"
JOB_WAIT_S = 60.0


@dataclass
class Logs:
    harness: ServiceHarness
    azurite: LocalAzurite
    #: Every tool result and job view this test saw, as text (to search for leaked secrets).
    seen: list[str]

    async def call(self, org: str, tool: str, args: dict[str, Any] | None = None) -> Any:
        result = await self.harness.call_tool(org, tool, args or {})
        self.seen.append(repr(result))
        return result

    def container(self, blobs: Iterable[tuple[str, bytes]]) -> str:
        """A new container in Azurite holding `blobs`; returns its name."""
        name = f"logs-{uuid.uuid4().hex[:12]}"
        self.azurite.upload(name, blobs)
        return name

    async def add_source(self, org: str, container: str, **kwargs: Any) -> dict[str, Any]:
        url = self.azurite.container_sas_url(container)
        return await self.call(org, "source_add", {"name": container, "sas_url": url, **kwargs})  # type: ignore[no-any-return]

    async def finish(self, org: str, job_id: str) -> dict[str, Any]:
        """Poll the job until it is over; its last view."""

        async def poll() -> dict[str, Any]:
            while True:
                view: dict[str, Any] = await self.call(org, "job_status", {"job_id": job_id})
                if view["status"] in ("succeeded", "failed", "cancelled"):
                    return view
                await asyncio.sleep(0.05)

        return await asyncio.wait_for(poll(), JOB_WAIT_S)

    async def analyze_source(self, org: str, source_id: str, **kwargs: Any) -> tuple[dict[str, Any], Any]:
        """Start analyze_source, wait for it: (its last view, its result or None when it failed)."""
        started = await self.call(org, "analyze_source", {"source_id": source_id, **kwargs})
        view = await self.finish(org, started["job_id"])
        if view["status"] != "succeeded":
            return view, None
        return view, await self.call(org, "job_result", {"job_id": started["job_id"]})
