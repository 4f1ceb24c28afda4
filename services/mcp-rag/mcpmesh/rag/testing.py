"""Test helpers: a rag service under a harness, called as any org."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from mcpmesh.service.testing import ServiceHarness, ToolFailed

RW = ["rag:read", "rag:write", "llm:read"]


@dataclass
class Rag:
    harness: ServiceHarness

    async def call(
        self, org: str, tool: str, args: dict[str, Any] | None = None, *, scopes: list[str] | None = None
    ) -> Any:
        return await self.harness.call_tool(org, tool, args or {}, scopes=scopes or RW)

    async def fails(
        self, org: str, tool: str, args: dict[str, Any] | None = None, *, scopes: list[str] | None = None
    ) -> ToolFailed:
        try:
            result = await self.call(org, tool, args, scopes=scopes)
        except ToolFailed as exc:
            return exc
        raise AssertionError(f"{tool} was expected to fail but returned {result!r}")


def org() -> str:
    return f"org-rag-{uuid.uuid4().hex[:10]}"
