"""Helpers for tests and benchmarks of the context service (no pytest needed).

async with ServiceHarness(build_service(...), nats_server) as harness:   # or LocalHarness(...)
    mesh = Mesh(harness)
    ctx_id = await mesh.create("org-acme", "chat")
    text = await mesh.fails("org-other", "get", {"ctx_id": ctx_id})
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from mcpmesh.context.app import ContextApp
from mcpmesh.context.service import app_of
from mcpmesh.proto.tiers import ORG_SETTINGS_BUCKET, tier_defaults
from mcpmesh.service.testing import Harness, ServiceHarness, ToolFailed
from mcpmesh.store import Collection, TenantStore


class Mesh:
    """A harness plus shortcuts: `call` a tool as an org, `fails` expects a tool error and returns its text."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.app: ContextApp = app_of(harness.service)

    async def call(
        self, org: str, tool: str, args: dict[str, Any] | None = None, *, scopes: list[str] | None = None
    ) -> Any:
        return await self.harness.call_tool(org, tool, args or {}, scopes=scopes)

    async def fails(
        self, org: str, tool: str, args: dict[str, Any] | None = None, *, scopes: list[str] | None = None
    ) -> str:
        try:
            result = await self.harness.call_tool(org, tool, args or {}, scopes=scopes)
        except ToolFailed as exc:
            return exc.text
        raise AssertionError(f"{tool} was expected to fail but returned {result!r}")

    def tenant(self, org: str) -> TenantStore:
        """Any org's store, as a test inspects or damages it (never offered to the service's code)."""
        return self.harness.service.store.for_tenant(org)

    async def collection(self, org: str, kind: str) -> Collection:
        return await self.tenant(org).collection(kind)

    async def create(self, org: str, title: str = "chat", **args: Any) -> str:
        created = await self.call(org, "create", {"title": title, **args})
        ctx_id: str = created["ctx_id"]
        return ctx_id

    async def publish_settings(self, org: str, **overrides: Any) -> None:
        """What the gateway would publish for the org (NATS KV), over the pro tier's defaults."""
        harness = self.harness
        assert isinstance(harness, ServiceHarness) and harness.client is not None, (
            "org settings live in NATS KV: use inside `async with ServiceHarness(...)`"
        )
        settings = msgspec.structs.replace(tier_defaults("pro"), **overrides)
        kv = await harness.client.kv(ORG_SETTINGS_BUCKET)
        await kv.put(org, msgspec.json.encode(settings))


def unique_org(prefix: str = "org-t") -> str:
    """An org id nobody else uses (org settings live in NATS KV, shared by a whole test session)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
