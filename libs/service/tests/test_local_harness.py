"""LocalHarness: a service driven in process, through the same checks as on the bus."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from mcp.server.mcpserver import Context

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.service import MeshService, ServiceSettings, call_of
from mcpmesh.service.admission import AdmissionLimits
from mcpmesh.service.testing import LocalHarness, ToolFailed


def _service(held: asyncio.Event | None = None, release: asyncio.Event | None = None) -> MeshService:
    service = MeshService("echo")
    held, release = held or asyncio.Event(), release or asyncio.Event()

    @service.tool(access="read")
    async def echo(text: str, ctx: Context) -> dict[str, str]:
        """Echo text with the caller's org and tier."""
        call = call_of(ctx)
        return {"text": text, "org": call.org_id, "tier": call.tier}

    @service.tool(access="write", tiers=["enterprise"])
    async def big(ctx: Context) -> str:
        """Enterprise only."""
        return "ok"

    @service.tool(access="read")
    async def hold(ctx: Context) -> str:
        """Wait until released."""
        held.set()
        await release.wait()
        return "released"

    @service.prompt()
    def greet(name: str) -> str:
        return f"hello {name}"

    @service.resource("echo://{word}")
    async def word(word: str) -> str:
        return f"{word} from {call_of().org_id}"

    return service


async def test_tools_prompts_and_resources_run_in_process_as_the_stamped_org() -> None:
    async with LocalHarness(_service()) as local:
        assert await local.call_tool("org-acme", "echo", {"text": "hi"}) == {
            "text": "hi",
            "org": "org-acme",
            "tier": "pro",
        }
        prompt = await local.request("org-acme", "prompts/get", {"name": "greet", "arguments": {"name": "x"}})
        assert prompt["messages"][0]["content"]["text"] == "hello x"
        read = await local.request("org-beta", "resources/read", {"uri": "echo://w"})
        assert read["contents"][0]["text"] == "w from org-beta"


async def test_the_kit_checks_apply_scope_tier_arguments_and_stamp() -> None:
    async with LocalHarness(_service()) as local:
        with pytest.raises(MeshException) as scope:
            await local.call_tool("org-acme", "big", scopes=["echo:read"])
        assert scope.value.error.code == ErrorCode.FORBIDDEN
        assert "missing scope 'echo:write'" in scope.value.error.message
        with pytest.raises(MeshException) as tier:
            await local.call_tool("org-acme", "big")  # the harness stamps the pro tier
        assert "not available on the 'pro' tier" in tier.value.error.message
        with pytest.raises(ToolFailed) as bad:
            await local.call_tool("org-acme", "echo", {"text": 3})
        assert bad.value.text.startswith("invalid_request: invalid arguments: text: expected a string")
        assert "text" in bad.value.text
        with pytest.raises(MeshException) as other_org:  # a stamp for one org, a request for another
            await local.request("org-acme", "tools/list", stamp=local.stamp("org-beta"))
        assert "does not match the request subject" in other_org.value.error.message
        with pytest.raises(MeshException) as forged:
            await local.request("org-acme", "tools/list", stamp=LocalHarness(_service()).stamp("org-acme"))
        assert forged.value.error.code == ErrorCode.UNAUTHENTICATED


async def test_admission_refuses_past_the_services_limits() -> None:
    held, release = asyncio.Event(), asyncio.Event()
    service = _service(held, release)
    limits = AdmissionLimits(max_inflight=1, max_queued=0)
    settings = dataclasses.replace(ServiceSettings(), admission=limits)
    async with LocalHarness(service, settings=settings) as local:
        holding = asyncio.create_task(local.call_tool("org-acme", "hold"))
        await held.wait()
        with pytest.raises(MeshException) as refused:
            await local.call_tool("org-acme", "echo", {"text": "x"})
        assert refused.value.error.code == ErrorCode.UNAVAILABLE
        assert refused.value.error.retryable
        release.set()
        assert await holding == "released"
        assert await local.call_tool("org-acme", "echo", {"text": "x"}) == {
            "text": "x",
            "org": "org-acme",
            "tier": "pro",
        }
