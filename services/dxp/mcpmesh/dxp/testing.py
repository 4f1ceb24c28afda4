"""Test helpers: dxp (and log-analyzer) on ServiceHarnesses with the sandbox (tests, bench)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from mcpmesh.dev.dxpsandbox import Project as SandboxProject
from mcpmesh.dev.dxpsandbox import Sandbox
from mcpmesh.service.testing import ServiceHarness

ORG_A = "org-acme"
ORG_B = "org-globex"
JOB_WAIT_S = 60.0
DONE = ("succeeded", "failed", "cancelled")


@dataclass
class Dxp:
    harness: ServiceHarness
    sandbox: Sandbox
    logs: ServiceHarness | None = None
    #: Every tool result and job view this test saw, as text (to search for leaked secrets).
    seen: list[str] = field(default_factory=list)

    async def call(self, org: str, tool: str, args: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        result = await self.harness.call_tool(org, tool, args or {}, **kwargs)
        self.seen.append(repr(result))
        return result

    async def register(
        self, org: str, name: str = "shop", project: SandboxProject | None = None
    ) -> SandboxProject:
        project = project or self.sandbox.add_project()
        await self.call(
            org,
            "project_register",
            {
                "name": name,
                "project_id": project.project_id,
                "client_key": project.client_key,
                "client_secret": project.client_secret,
                "api_url": self.sandbox.base_url,
            },
        )
        return project

    async def finish(self, harness: ServiceHarness, org: str, job_id: str) -> dict[str, Any]:
        """Poll a job of `harness`'s service until it is over; its last view."""

        async def poll() -> dict[str, Any]:
            while True:
                view: dict[str, Any] = await harness.call_tool(org, "job_status", {"job_id": job_id})
                self.seen.append(repr(view))
                if view["status"] in DONE:
                    return view
                await asyncio.sleep(0.05)

        return await asyncio.wait_for(poll(), JOB_WAIT_S)
