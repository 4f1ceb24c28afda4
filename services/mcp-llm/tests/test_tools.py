"""models, count_tokens, tools passthrough, bad input, tenant export/delete."""

from __future__ import annotations

import pytest

from mcpmesh.proto.errors import ErrorCode
from mcpmesh.service.testing import internals_in

from .conftest import Llm, org

HI = [{"role": "user", "content": "hi there"}]


async def test_models_lists_what_the_org_may_use_with_prices_and_the_aliases(llm: Llm) -> None:
    listed = await llm.call(org(), "models")
    by_id = {m["id"]: m for m in listed["models"]}
    assert list(by_id) == ["mock/echo", "mock/hash-embed", "sysa/big", "sysa/emb", "sysb/big2", "sysb/big"]
    assert by_id["sysa/big"]["input_cost_per_token"] == 1e-6 and by_id["sysa/big"]["billed_to"] == "system"
    assert by_id["mock/hash-embed"]["mode"] == "embedding"
    assert listed["aliases"]["default"] == "big"


async def test_billed_calls_are_not_announced_as_safe_to_repeat(llm: Llm) -> None:
    listed = await llm.harness.request(org(), "tools/list", scopes=["llm:read"])
    tools = {t["name"]: t for t in listed["tools"]}
    for name in ("chat", "embed"):  # every call spends the org's tokens
        hints = tools[name]["annotations"]
        assert (hints["readOnlyHint"], hints["idempotentHint"], hints["destructiveHint"]) == (
            False,
            False,
            False,
        )
        assert hints["openWorldHint"] is True and tools[name]["_meta"]["mcpmesh/scope"] == "llm:read"
    assert tools["models"]["annotations"]["readOnlyHint"] is True


async def test_count_tokens_of_text_and_messages(llm: Llm) -> None:
    a = org()
    text = await llm.call(a, "count_tokens", {"text": "hello world, how are you?"})
    assert text["tokens"] > 3 and text["served_by"] == "sysa/big"
    messages = await llm.call(a, "count_tokens", {"messages": HI * 3, "model": "echo"})
    assert messages["tokens"] > 6 and messages["served_by"] == "mock/echo"
    assert llm.fake.requests == []  # counted locally
    failure = await llm.fails(a, "count_tokens", {})
    assert failure.error is not None and failure.error.code == ErrorCode.INVALID_REQUEST


async def test_tools_and_response_format_pass_through_to_the_provider(llm: Llm) -> None:
    tools = [
        {
            "type": "function",
            "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
        }
    ]
    fmt = {"type": "json_object"}
    await llm.call(
        org(),
        "chat",
        {"messages": HI, "tools": tools, "response_format": fmt, "stop": ["\n"], "max_tokens": 5},
    )
    body = llm.fake.requests[0].body
    assert body["tools"] == tools and body["response_format"] == fmt
    assert body["stop"] == ["\n"] and body["max_tokens"] == 5


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"messages": []}, "messages must be a list"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0] must be an object whose role"),
        ({"messages": [{"role": "user"}]}, "messages[0] has no content"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content must be"),
        ({"messages": HI, "temperature": 3}, "temperature must be between 0 and 2"),
        ({"messages": HI, "max_tokens": 0}, "max_tokens must be at least 1"),
        ({"messages": "hi"}, "invalid arguments"),
    ],
)
async def test_malformed_chat_requests_are_refused_clearly(llm: Llm, args: dict, expected: str) -> None:
    failure = await llm.fails(org(), "chat", args)
    assert failure.error is not None and failure.error.code == ErrorCode.INVALID_REQUEST
    assert expected in failure.text and internals_in(failure.text) == []
    assert llm.fake.requests == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"name": "Bad Name", "models": [{"name": "x"}]}, "provider name"),
        ({"name": "p", "models": []}, "models must be a list of 1-64"),
        ({"name": "p", "kind": "mesh-offline", "models": [{"name": "x"}]}, "kind must be one of"),
        ({"name": "p", "models": [{"name": "x", "mode": "image"}]}, "mode must be one of"),
        ({"name": "p", "models": [{"name": "x", "input_cost_per_token": -1}]}, "non-negative"),
        ({"name": "p", "models": [{"name": "x", "colour": "red"}]}, "unknown model field"),
        ({"name": "p", "api_base": "ftp://x", "models": [{"name": "x"}]}, "http:// or https://"),
    ],
)
async def test_malformed_providers_are_refused_clearly(llm: Llm, args: dict, expected: str) -> None:
    failure = await llm.fails(org(), "set_provider", args)
    assert failure.error is not None and failure.error.code == ErrorCode.INVALID_REQUEST
    assert expected in failure.text


async def test_tenant_delete_drops_the_orgs_configuration_usage_cache_and_keys(llm: Llm) -> None:
    a, b = org(), org()
    for who in (a, b):
        await llm.call(
            who,
            "set_provider",
            {"name": "p", "api_base": llm.fake.url, "api_key": "k" * 20, "models": [{"name": "own"}]},
        )
        await llm.call(who, "chat", {"messages": HI, "model": "own", "temperature": 0})
    exported = await llm.harness.tenant_command("export", a)
    assert exported.export is not None
    assert {"llm_config", "llm_usage", "llm_cache"} <= set(
        exported.export
    ) and "secrets" not in exported.export
    await llm.harness.tenant_command("delete", a)
    assert (await llm.call(a, "providers"))["org"] == []
    assert (await llm.call(a, "usage"))["totals"]["calls"] == 0
    assert (await llm.call(b, "providers"))["org"][0]["key"] is not None
    assert (await llm.call(b, "usage"))["totals"]["calls"] == 1
