"""An org's own providers and keys: write-only keys, used only for that org, selection order,
aliases, allowed_models, SSRF refusals; org B never sees nor uses org A's configuration."""

from __future__ import annotations

import dataclasses
import logging

import litellm
import pytest

from mcpmesh.llm.testing import FakeProvider
from mcpmesh.proto.errors import ErrorCode, MeshException

from .conftest import SYSTEM_KEY, Llm, org

HI = [{"role": "user", "content": "hi there"}]
ORG_KEY = "sk-org-a-" + "k" * 30


async def own_provider(
    llm: Llm, org_id: str, own: FakeProvider, *, key: str | None = ORG_KEY, **extra: object
) -> dict:
    args = {
        "name": "mine",
        "api_base": own.url,
        "models": [{"name": "big", "model": "my-big", "class": "large"}, {"name": "llama", "class": "large"}],
        **extra,
    }
    if key is not None:
        args["api_key"] = key
    return await llm.call(org_id, "set_provider", args)


@pytest.fixture
async def own() -> FakeProvider:
    async with FakeProvider(reply="from the org's own endpoint") as provider:
        yield provider


async def test_the_orgs_own_provider_comes_first_with_its_key_and_is_billed_to_it(
    llm: Llm, own: FakeProvider
) -> None:
    a = org()
    saved = await own_provider(llm, a, own)
    assert saved["key"]["last4"] == ORG_KEY[-4:] and ORG_KEY not in str(saved)
    answer = await llm.call(a, "chat", {"messages": HI})  # default -> big: the org's own first
    assert answer["served_by"] == "mine/big" and answer["content"] == "from the org's own endpoint"
    assert answer["usage"]["billed_to"] == "org"
    assert [r.authorization for r in own.requests] == [f"Bearer {ORG_KEY}"]
    assert own.requests[0].body["model"] == "my-big"
    assert llm.fake.requests == []


async def test_the_orgs_provider_falls_back_to_the_system_default(llm: Llm, own: FakeProvider) -> None:
    a = org()
    await own_provider(llm, a, own)
    own.script("500")
    answer = await llm.call(a, "chat", {"messages": HI})
    assert answer["served_by"] == "sysa/big"
    assert answer["fallbacks_tried"] == [{"provider": "mine", "model": "big", "status": "500"}]
    assert llm.fake.requests[0].authorization == f"Bearer {SYSTEM_KEY}"  # the system's key, not the org's


async def test_another_org_never_uses_nor_sees_the_first_orgs_provider(llm: Llm, own: FakeProvider) -> None:
    a, b = org(), org()
    await own_provider(llm, a, own)
    answer = await llm.call(b, "chat", {"messages": HI})
    assert answer["served_by"] == "sysa/big"
    assert own.requests == []
    shown = await llm.call(b, "providers")
    assert shown["org"] == []
    assert "mine" not in str(await llm.call(b, "models"))
    failure = await llm.fails(b, "remove_provider", {"name": "mine"})
    assert failure.error is not None and failure.error.code == ErrorCode.NOT_FOUND
    failure = await llm.fails(b, "chat", {"messages": HI, "model": "mine/big"})
    assert failure.error is not None and failure.error.code == ErrorCode.NOT_FOUND
    assert (await llm.call(a, "providers"))["org"][0]["name"] == "mine"  # still there for A


async def test_a_provider_without_a_key_never_gets_the_system_key(
    llm: Llm, own: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SYSTEM_KEY)  # litellm's own fallback for a missing key
    a = org()
    await own_provider(llm, a, own, key=None)
    await llm.call(a, "chat", {"messages": HI})
    assert own.requests[0].authorization != f"Bearer {SYSTEM_KEY}"


async def test_keys_are_write_only_and_never_logged(
    llm: Llm, own: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    a = org()
    await own_provider(llm, a, own, models=[{"name": "solo"}])  # a class of its own: no fallback
    own.script("401")
    shown = await llm.call(a, "providers")
    failure = await llm.fails(a, "chat", {"messages": HI, "model": "solo"})
    assert failure.error is not None and failure.error.code == ErrorCode.UNAVAILABLE
    assert failure.error.retryable is False and "valid key" in failure.text
    for text in (str(shown), failure.text, caplog.text):
        assert ORG_KEY not in text and SYSTEM_KEY not in text
    assert shown["org"][0]["key"]["last4"] == ORG_KEY[-4:]
    stored = await (await llm.harness.service.store.for_tenant(a).collection("secrets")).find_one({})
    assert stored is not None and ORG_KEY not in str(stored)


async def test_replacing_a_provider_keeps_its_key_and_removing_drops_both(
    llm: Llm, own: FakeProvider
) -> None:
    a = org()
    await own_provider(llm, a, own)
    again = await own_provider(llm, a, own, key=None, rpm=100)
    assert again["has_key"] is True and again["provider"]["rpm"] == 100
    await llm.call(a, "chat", {"messages": HI, "model": "llama"})
    assert own.requests[-1].authorization == f"Bearer {ORG_KEY}"  # the new version's router has it
    removed = await llm.call(a, "remove_provider", {"name": "mine"})
    assert removed["removed"] is True
    assert (await llm.call(a, "providers"))["org"] == []
    failure = await llm.fails(a, "chat", {"messages": HI, "model": "llama"})
    assert failure.error is not None and failure.error.code == ErrorCode.NOT_FOUND


async def test_org_aliases_win_over_the_systems(llm: Llm, own: FakeProvider) -> None:
    a = org()
    await own_provider(llm, a, own)
    await llm.call(a, "set_aliases", {"aliases": {"fast": "llama", "mine": "echo"}})
    assert (await llm.call(a, "chat", {"messages": HI, "model": "fast"}))["served_by"] == "mine/llama"
    assert (await llm.call(a, "chat", {"messages": HI, "model": "mine"}))["served_by"] == "mock/echo"
    assert (await llm.call(org(), "chat", {"messages": HI, "model": "fast"}))["served_by"] == "sysb/big2"


async def test_allowed_models_refuse_others_and_list_the_allowed_ones(llm: Llm) -> None:
    a = org()
    await llm.settings(a, allowed_models=["mock/*"])
    failure = await llm.fails(a, "chat", {"messages": HI})
    assert failure.error is not None and failure.error.code == ErrorCode.FORBIDDEN
    assert "mock/echo" in failure.text and "not allowed" in failure.text
    assert llm.fake.requests == [] and llm.fake2.requests == []
    assert (await llm.call(a, "chat", {"messages": HI, "model": "echo"}))["served_by"] == "mock/echo"
    listed = await llm.call(a, "models")
    assert {m["id"] for m in listed["models"]} == {"mock/echo", "mock/hash-embed"}


async def test_allowed_models_also_trim_the_fallbacks(llm: Llm) -> None:
    a = org()
    await llm.settings(a, allowed_models=["sysa/*", "big2"])
    llm.fake.script("500")
    answer = await llm.call(a, "chat", {"messages": HI})
    assert answer["served_by"] == "sysb/big2"  # sysb/big is not allowed: skipped
    assert [r.body["model"] for r in llm.fake2.requests] == ["big2"]


async def test_unknown_model_is_not_found_with_the_choices(llm: Llm) -> None:
    failure = await llm.fails(org(), "chat", {"messages": HI, "model": "gpt-17"})
    assert failure.error is not None and failure.error.code == ErrorCode.NOT_FOUND
    assert "gpt-17" in failure.text and "mock/echo" in failure.text


@pytest.mark.parametrize(
    "api_base",
    [
        "http://127.0.0.1:9/v1",
        "http://169.254.169.254/latest",
        "http://10.1.2.3/v1",
        "http://[::1]/v1",
        "file:///etc/passwd",
    ],
)
async def test_org_endpoints_inside_the_deployment_are_refused(llm: Llm, api_base: str) -> None:
    llm.app.settings = llm.app.settings.__class__(
        **{**llm.app.settings.__dict__, "allow_private_endpoints": False}
    )
    failure = await llm.fails(
        org(), "set_provider", {"name": "evil", "api_base": api_base, "models": [{"name": "x"}]}
    )
    assert failure.error is not None
    assert failure.error.code in (ErrorCode.FORBIDDEN, ErrorCode.INVALID_REQUEST)


async def test_an_endpoint_is_checked_again_at_call_time(llm: Llm, own: FakeProvider) -> None:
    a = org()
    await own_provider(llm, a, own)  # saved while private endpoints were allowed
    await own_provider(llm, a, own, name="solo", models=[{"name": "solo"}])
    llm.app.settings = llm.app.settings.__class__(
        **{**llm.app.settings.__dict__, "allow_private_endpoints": False}
    )
    answer = await llm.call(a, "chat", {"messages": HI})
    assert answer["served_by"] == "sysa/big"  # the org's endpoint was left out, the system's served
    assert [(t["model"], t["status"]) for t in answer["fallbacks_tried"]] == [
        ("big", "endpoint refused"),
        ("llama", "endpoint refused"),  # the org's other model of the class
    ]
    assert own.requests == []
    failure = await llm.fails(a, "chat", {"messages": HI, "model": "solo"})  # no other provider of it
    assert failure.error is not None and failure.error.code == ErrorCode.FORBIDDEN


@pytest.mark.parametrize("tool", ["providers", "set_provider", "remove_provider", "set_aliases"])
async def test_provider_admin_needs_llm_admin(llm: Llm, tool: str) -> None:
    args = {"name": "x", "models": [{"name": "x"}], "aliases": {}}
    with pytest.raises(MeshException) as refused:
        await llm.call(
            org(),
            tool,
            {k: v for k, v in args.items() if k != "aliases" or tool == "set_aliases"},
            scopes=["llm:read", "llm:write"],
        )
    assert refused.value.error.code == ErrorCode.FORBIDDEN


async def test_a_key_rotated_through_the_kits_secret_tools_is_used_at_once(
    llm: Llm, own: FakeProvider
) -> None:
    a = org()
    await own_provider(llm, a, own)
    await llm.call(a, "chat", {"messages": HI})
    rotated = "sk-org-a-rotated-" + "r" * 20
    await llm.call(a, "secret_set", {"name": "provider.mine", "value": rotated})
    await llm.call(a, "chat", {"messages": HI})
    await llm.call(a, "secret_delete", {"name": "provider.mine"})
    await llm.call(a, "chat", {"messages": HI})
    assert [r.authorization for r in own.requests] == [
        f"Bearer {ORG_KEY}",
        f"Bearer {rotated}",
        "Bearer no-key",
    ]
    listed = await llm.call(a, "providers")
    assert listed["org"][0]["key"] is None


@pytest.mark.usefixtures("one_minute")
async def test_a_provider_at_its_rpm_passes_the_call_to_the_next(llm: Llm, own: FakeProvider) -> None:
    a = org()
    await own_provider(llm, a, own, rpm=2)
    served = [(await llm.call(a, "chat", {"messages": HI}))["served_by"] for _ in range(2)]
    third = await llm.call(a, "chat", {"messages": HI})
    assert served == ["mine/big", "mine/big"] and third["served_by"] == "sysa/big"
    assert [(t["provider"], t["model"], t["status"]) for t in third["fallbacks_tried"]] == [
        ("mine", "big", "rpm"),
        ("mine", "llama", "rpm"),  # the rpm is the provider's, for all its models
    ]
    assert len(own.requests) == 2


async def test_evicted_routers_leave_litellms_process_wide_callbacks(llm: Llm, own: FakeProvider) -> None:
    llm.app.routing.settings = dataclasses.replace(llm.app.routing.settings, max_routers=1)
    before = len(litellm.callbacks)
    for _ in range(3):
        a = org()
        await own_provider(llm, a, own, rpm=50)
        assert (await llm.call(a, "chat", {"messages": HI}))["served_by"] == "mine/big"
    assert len(litellm.callbacks) <= before + 1


@pytest.mark.usefixtures("one_minute")
async def test_a_provider_past_its_tpm_passes_calls_to_the_next(llm: Llm, own: FakeProvider) -> None:
    a = org()
    await own_provider(llm, a, own, tpm=30)  # one call spends 18 tokens
    served = [(await llm.call(a, "chat", {"messages": HI}))["served_by"] for _ in range(2)]
    third = await llm.call(a, "chat", {"messages": HI})
    assert served == ["mine/big", "mine/big"] and third["served_by"] == "sysa/big"
    assert [(t["provider"], t["model"], t["status"]) for t in third["fallbacks_tried"]] == [
        ("mine", "big", "tpm"),
        ("mine", "llama", "tpm"),  # the tpm is the provider's, for all its models
    ]
    assert len(own.requests) == 2


async def test_two_orgs_on_one_endpoint_each_send_their_own_key(llm: Llm, own: FakeProvider) -> None:
    a, b = org(), org()
    key_b = "sk-org-b-" + "b" * 30
    await own_provider(llm, a, own)
    await own_provider(llm, b, own, key=key_b)
    for who in (a, b, a, b):
        await llm.call(who, "chat", {"messages": HI})
    assert [r.authorization for r in own.requests] == [
        f"Bearer {k}" for k in (ORG_KEY, key_b, ORG_KEY, key_b)
    ]
