"""mcp-llm end to end: an SDK client through the gateway, the llm service on the bus, a scripted
OpenAI-compatible provider: streamed tokens arrive as progress while the call runs, and the
gateway's usage API shows the tokens and cost the provider reported, once, for the right org."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mcpmesh.llm import LlmSettings, build_service
from mcpmesh.llm.testing import FakeProvider
from mcpmesh.secrets import new_master_key_entry
from mcpmesh.service import ServiceSettings
from tests.gateway.conftest import Gateway, Mesh
from tests.gateway.test_sdk_clients import MODERN, sdk_client

HI = [{"role": "user", "content": "hi"}]
REPLY = "one two three four five"


@pytest.fixture
async def llm_mesh(mesh: Mesh) -> AsyncIterator[tuple[Mesh, Gateway, FakeProvider]]:
    async with FakeProvider(reply=REPLY) as fake:
        settings = LlmSettings(
            providers=[
                {"name": "mock", "kind": "mesh-offline"},
                {
                    "name": "sysa",
                    "api_base": fake.url,
                    "models": [{"name": "big", "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}],
                },
            ],
            aliases={"default": "big"},
            allow_private_endpoints=True,  # an org's own provider on the fake (127.0.0.1)
        )
        store = ServiceSettings(
            mongodb_url=mesh.mongo_url,
            mongodb_database=mesh.database + "_llm",
            secrets_keys=new_master_key_entry("t1"),
        )
        await mesh.service(build_service(settings), store)
        gw = await mesh.gateway()
        await mesh.wait_discovered("llm")
        yield mesh, gw, fake


@pytest.mark.parametrize("mode", [MODERN, "legacy"])
async def test_streamed_tokens_reach_the_sdk_client_as_progress(llm_mesh: Any, mode: str) -> None:
    mesh, gw, fake = llm_mesh
    _org, key = await mesh.tenant(scopes=["llm:read"])
    seen: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message)

    async with sdk_client(gw.url, key, mode) as client:
        result = await client.call_tool("llm_chat", {"messages": HI}, progress_callback=on_progress)
    assert result.is_error is False
    assert result.structured_content is not None
    assert result.structured_content["content"] == REPLY
    assert result.structured_content["served_by"] == "sysa/big"
    assert "".join(m or "" for m in seen) == REPLY
    assert len(seen) == len(REPLY.split())
    assert fake.requests[0].body["stream"] is True


async def usage_when(mesh: Mesh, query: str, calls: int) -> dict[str, Any]:
    """The usage API's answer once it counts `calls` (the gateway's writer rolls events up in the
    background)."""
    report: dict[str, Any] = {}
    for _ in range(100):
        report = await mesh.admin("GET", f"/admin/usage?{query}", expect=200)
        if report["totals"]["calls"] >= calls:
            break
        await asyncio.sleep(0.1)
    return report


async def test_the_usage_api_shows_the_providers_tokens_and_cost_for_the_org(llm_mesh: Any) -> None:
    mesh, gw, _fake = llm_mesh
    org_a, key_a = await mesh.tenant(scopes=["llm:read"])
    org_b, key_b = await mesh.tenant(scopes=["llm:read"], name="Other")
    async with sdk_client(gw.url, key_a, MODERN) as client:
        for _ in range(2):
            assert (await client.call_tool("llm_chat", {"messages": HI})).is_error is False
    async with sdk_client(gw.url, key_b, MODERN) as client:
        assert (await client.call_tool("llm_chat", {"messages": HI, "model": "echo"})).is_error is False
    totals = (await usage_when(mesh, f"org_id={org_a}&service=llm&tool=chat", 2))["totals"]
    assert (totals["calls"], totals["llm_prompt_tokens"], totals["llm_completion_tokens"]) == (2, 22, 14)
    assert totals["llm_cost_usd"] == round(2 * (11 * 1e-6 + 7 * 2e-6), 6)
    other = await mesh.admin("GET", f"/admin/usage?org_id={org_b}&service=llm", expect=200)
    assert other["totals"]["llm_cost_usd"] == 0


async def test_a_cached_answer_streams_as_one_progress_message(llm_mesh: Any) -> None:
    mesh, gw, fake = llm_mesh
    _org, key = await mesh.tenant(scopes=["llm:read"])
    seen: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message)

    args = {"messages": HI, "temperature": 0}
    async with sdk_client(gw.url, key, MODERN) as client:
        first = await client.call_tool("llm_chat", args, progress_callback=on_progress)
        streamed = len(seen)
        again = await client.call_tool("llm_chat", args, progress_callback=on_progress)
    assert first.structured_content is not None and again.structured_content is not None
    assert (first.structured_content["cached"], again.structured_content["cached"]) == (False, True)
    assert streamed == len(REPLY.split()) and seen[streamed:] == [REPLY]
    assert len(fake.requests) == 1


async def test_the_orgs_monthly_token_budget_set_through_the_admin_api_is_enforced(llm_mesh: Any) -> None:
    mesh, gw, fake = llm_mesh
    _org, key = await mesh.tenant(scopes=["llm:read"], settings={"monthly_llm_tokens": 20})
    async with sdk_client(gw.url, key, MODERN) as client:
        assert (await client.call_tool("llm_chat", {"messages": HI})).is_error is False  # 18 tokens
        assert (await client.call_tool("llm_chat", {"messages": HI})).is_error is False  # 36
        refused = await client.call_tool("llm_chat", {"messages": HI})
    assert refused.is_error is True and refused.structured_content is not None
    assert refused.structured_content["code"] == "limit_exceeded"
    assert len(fake.requests) == 2
    bad = await mesh.admin("POST", "/admin/orgs", {"name": "x", "settings": {"monthly_llm_cost_usd": -1}})
    assert "monthly_llm_cost_usd" in str(bad)


async def test_the_usage_api_shows_tokens_and_cost_per_model_and_payer(llm_mesh: Any) -> None:
    """System model, the org's own provider (billed to the org) and the offline model: each with
    the tokens (cached ones too) and cost the provider reported, split by who pays."""
    mesh, gw, fake = llm_mesh
    fake.cached_tokens = 3
    org, key = await mesh.tenant(scopes=["llm:*"])
    own = {"name": "small", "input_cost_per_token": 3e-6, "output_cost_per_token": 4e-6}
    async with sdk_client(gw.url, key, MODERN) as client:
        added = await client.call_tool(
            "llm_set_provider", {"name": "own", "api_base": fake.url, "api_key": "sk-own", "models": [own]}
        )
        assert added.is_error is False, added
        for model in ("big", "big", "small", "echo"):
            answer = await client.call_tool("llm_chat", {"messages": HI, "model": model, "stream": False})
            assert answer.is_error is False, answer
    report = await usage_when(mesh, f"org_id={org}&service=llm&tool=chat&group_by=llm_model,llm_billed_to", 4)
    groups = {
        (g["llm_model"], g["llm_billed_to"]): (
            g["calls"], g["llm_prompt_tokens"], g["llm_completion_tokens"], g["llm_cached_tokens"],
            g["llm_cost_usd"])
        for g in report["groups"]
    }  # fmt: skip
    echo_tokens = groups[("mock/echo", "system")][1:3]
    assert groups == {
        ("sysa/big", "system"): (2, 22, 14, 6, round(2 * (11 * 1e-6 + 7 * 2e-6), 6)),
        ("own/small", "org"): (1, 11, 7, 3, round(11 * 3e-6 + 7 * 4e-6, 6)),
        ("mock/echo", "system"): (1, *echo_tokens, 0, 0.0),
    }
    assert min(echo_tokens) > 0
    billed = await mesh.admin(
        "GET", f"/admin/usage?org_id={org}&service=llm&llm_billed_to=system", expect=200
    )
    assert billed["totals"]["llm_cost_usd"] == round(2 * (11 * 1e-6 + 7 * 2e-6), 6)
