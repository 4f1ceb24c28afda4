"""Usage and cost counted once to the right org (tool, kit usage event, budgets), caches, embed."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import msgspec
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from mcpmesh.llm.usage import USAGE_KIND, Buckets
from mcpmesh.proto.errors import ErrorCode
from mcpmesh.store import TenantStore

from .conftest import Llm, org

HI = [{"role": "user", "content": "hi there"}]
COST = round(11 * 1e-6 + 7 * 2e-6, 9)


async def test_usage_events_carry_tokens_cost_and_who_served_once_per_call(llm: Llm) -> None:
    a, b = org(), org()
    client = llm.harness.client
    assert client is not None
    sub = await client.js.pull_subscribe(
        f"usage.{a}.llm", stream="USAGE", config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
    )
    llm.fake.cached_tokens = 4
    await llm.call(a, "chat", {"messages": HI})
    await llm.call(b, "chat", {"messages": HI, "model": "cheap"})
    [message] = await sub.fetch(1, timeout=5)
    event = msgspec.json.decode(message.data)
    assert event["org_id"] == a and event["tool"] == "chat"
    assert (event["llm_prompt_tokens"], event["llm_completion_tokens"], event["llm_cached_tokens"]) == (
        11,
        7,
        4,
    )
    assert event["llm_cost_usd"] == COST
    assert (event["llm_model"], event["llm_billed_to"]) == ("sysa/big", "system")
    await sub.unsubscribe()


async def test_the_usage_tool_shows_each_orgs_own_tokens_and_cost(llm: Llm) -> None:
    a, b = org(), org()
    await llm.call(a, "chat", {"messages": HI})
    await llm.call(a, "chat", {"messages": HI})
    await llm.call(b, "chat", {"messages": HI, "model": "cheap"})
    mine = await llm.call(a, "usage")
    assert mine["totals"]["calls"] == 2 and mine["totals"]["prompt_tokens"] == 22
    assert mine["totals"]["cost_usd"] == round(2 * COST, 9)
    assert [(r["model"], r["billed_to"], r["calls"]) for r in mine["by_day_and_model"]] == [
        ("sysa/big", "system", 2)
    ]
    theirs = await llm.call(b, "usage")
    assert [r["model"] for r in theirs["by_day_and_model"]] == ["mock/echo"]


async def test_a_used_up_token_budget_refuses_before_calling_the_provider(llm: Llm) -> None:
    a = org()
    await llm.settings(a, monthly_llm_tokens=20)
    await llm.call(a, "chat", {"messages": HI})  # 18 tokens: under the budget
    await llm.call(a, "chat", {"messages": HI})  # 36: over it now
    calls = len(llm.fake.requests)
    failure = await llm.fails(a, "chat", {"messages": HI})
    assert failure.error is not None and failure.error.code == ErrorCode.LIMIT_EXCEEDED
    assert "monthly_llm_tokens" in failure.text
    assert len(llm.fake.requests) == calls
    assert (await llm.call(org(), "chat", {"messages": HI}))["served_by"] == "sysa/big"  # others unaffected


async def test_cached_answers_are_served_when_the_budget_is_used_up(llm: Llm) -> None:
    """A cache hit costs nothing: served past the monthly budget; a miss is still refused."""
    a = org()
    await llm.settings(a, monthly_llm_tokens=20)
    args = {"messages": HI, "temperature": 0}
    first = await llm.call(a, "chat", args)  # 18 tokens
    await llm.call(a, "embed", {"texts": ["one", "two"]})  # 2 more: at the budget now
    calls = len(llm.fake.requests)
    again = await llm.call(a, "chat", args)
    assert again["cached"] is True and again["content"] == first["content"]
    assert (await llm.call(a, "embed", {"texts": ["two", "one"]}))["cached"] == 2
    assert len(llm.fake.requests) == calls
    for tool, refused in (("chat", {"messages": HI}), ("embed", {"texts": ["one", "three"]})):
        failure = await llm.fails(a, tool, refused)
        assert failure.error is not None and failure.error.code == ErrorCode.LIMIT_EXCEEDED
    assert len(llm.fake.requests) == calls


async def test_a_cost_budget_counts_only_what_the_mesh_bills(llm: Llm) -> None:
    a = org()
    await llm.settings(a, monthly_llm_cost_usd=0.00001)
    await llm.call(a, "chat", {"messages": HI})
    failure = await llm.fails(a, "chat", {"messages": HI})
    assert failure.error is not None and failure.error.code == ErrorCode.LIMIT_EXCEEDED
    assert "monthly_llm_cost_usd" in failure.text
    assert len(llm.fake.requests) == 1


async def test_deterministic_chat_is_cached_per_org_and_cache_false_bypasses(llm: Llm) -> None:
    a, b = org(), org()
    args = {"messages": HI, "temperature": 0}
    first = await llm.call(a, "chat", args)
    again = await llm.call(a, "chat", args)
    assert (first["cached"], again["cached"]) == (False, True)
    assert again["content"] == first["content"] and again["usage"]["prompt_tokens"] == 0
    assert len(llm.fake.requests) == 1
    assert (await llm.call(b, "chat", args))["cached"] is False  # never shared across orgs
    assert (await llm.call(a, "chat", {**args, "cache": False}))["cached"] is False
    assert (await llm.call(a, "chat", {"messages": HI, "temperature": 0.7}))["cached"] is False
    assert len(llm.fake.requests) == 4
    report = await llm.call(a, "usage")
    assert report["totals"]["cache_hits"] == 1 and report["totals"]["calls"] == 4
    assert report["totals"]["cache_hit_rate"] == 0.25


async def test_embed_batches_keeps_order_and_caches_per_text(llm: Llm) -> None:
    a = org()
    texts = ["one", "two words", "three little words", "four"]
    first = await llm.call(a, "embed", {"texts": texts})
    assert first["served_by"] == "sysa/emb" and first["cached"] == 0
    assert [v[0] for v in first["vectors"]] == [float(len(t)) for t in texts]
    assert [len(r.body["input"]) for r in llm.fake.requests] == [2, 2]  # LLM_EMBED_BATCH=2
    again = await llm.call(a, "embed", {"texts": ["four", "five"]})
    assert again["cached"] == 1
    assert [r.body["input"] for r in llm.fake.requests[2:]] == [["five"]]
    assert again["vectors"][0] == first["vectors"][3]
    assert first["usage"]["prompt_tokens"] == 7  # the fake counts words


async def test_offline_embeddings_are_deterministic_and_similar_for_shared_words(llm: Llm) -> None:
    a = org()
    out = await llm.call(
        a,
        "embed",
        {"texts": ["the cat sat", "the cat sat", "stock prices fell"], "model": "hash-embed", "cache": False},
    )
    one, same, other = out["vectors"]
    assert one == same and out["dimensions"] == 256
    assert sum(x * y for x, y in zip(one, other, strict=True)) < 0.5
    assert llm.fake.requests == []


@pytest.mark.usefixtures("one_minute")
async def test_per_org_model_limits_are_shared_and_per_org(llm: Llm) -> None:
    a, b = org(), org()
    await llm.call(
        a,
        "set_provider",
        {
            "name": "lim",
            "api_base": llm.fake2.url,
            "models": [{"name": "tiny", "org_rpm": 2, "org_tpm": 1000}],
        },
    )
    await llm.call(
        b,
        "set_provider",
        {"name": "lim", "api_base": llm.fake2.url, "models": [{"name": "tiny", "org_rpm": 2}]},
    )
    await llm.call(a, "chat", {"messages": HI, "model": "tiny"})
    await llm.call(a, "chat", {"messages": HI, "model": "tiny"})
    failure = await llm.fails(a, "chat", {"messages": HI, "model": "tiny"})
    assert failure.error is not None and failure.error.code == ErrorCode.RATE_LIMITED
    assert "2 requests per minute of model 'tiny'" in failure.text and failure.error.retryable is True
    assert len(llm.fake2.requests) == 2
    assert (await llm.call(b, "chat", {"messages": HI, "model": "tiny"}))["served_by"] == "lim/tiny"


@pytest.mark.usefixtures("one_minute")
async def test_an_org_tpm_limit_counts_the_tokens_spent(llm: Llm) -> None:
    a = org()
    await llm.call(
        a,
        "set_provider",
        {"name": "lim", "api_base": llm.fake2.url, "models": [{"name": "tiny", "org_tpm": 30}]},
    )
    await llm.call(a, "chat", {"messages": HI, "model": "tiny"})  # 18 tokens
    await llm.call(a, "chat", {"messages": HI, "model": "tiny"})  # 36: at the limit now
    failure = await llm.fails(a, "chat", {"messages": HI, "model": "tiny"})
    assert failure.error is not None and "30 tokens per minute" in failure.text


async def test_one_orgs_prices_never_price_another_orgs_calls(llm: Llm) -> None:
    a, b = org(), org()
    priced = {"name": "shared", "input_cost_per_token": 0.001, "output_cost_per_token": 0.001}
    await llm.call(a, "set_provider", {"name": "p", "api_base": llm.fake2.url, "models": [priced]})
    await llm.call(
        b, "set_provider", {"name": "p", "api_base": llm.fake2.url, "models": [{"name": "shared"}]}
    )
    assert (await llm.call(a, "chat", {"messages": HI, "model": "shared"}))["usage"]["cost_usd"] == 0.018
    theirs = await llm.call(b, "chat", {"messages": HI, "model": "shared"})
    assert (theirs["usage"]["cost_usd"], theirs["usage"]["cost_known"]) == (0, False)
    [model] = [m for m in (await llm.call(b, "models"))["models"] if m["id"] == "p/shared"]
    assert model["input_cost_per_token"] is None


async def test_models_in_litellms_cost_map_are_priced_from_it(llm: Llm) -> None:
    a = org()
    await llm.call(
        a, "set_provider", {"name": "p", "api_base": llm.fake2.url, "models": [{"name": "gpt-4o-mini"}]}
    )
    llm.fake2.cached_tokens = 5
    answer = await llm.call(a, "chat", {"messages": HI, "model": "gpt-4o-mini"})
    # bundled prices of gpt-4o-mini: 1.5e-7 in, 7.5e-8 cache read, 6e-7 out
    assert answer["usage"]["cost_usd"] == round(6 * 1.5e-7 + 5 * 7.5e-8 + 7 * 6e-7, 9)
    assert answer["usage"]["cost_known"] is True


async def test_concurrent_calls_are_each_counted_once_in_the_daily_bucket(llm: Llm) -> None:
    a = org()
    await asyncio.gather(*(llm.call(a, "chat", {"messages": HI}) for _ in range(12)))
    totals = (await llm.call(a, "usage"))["totals"]
    assert (totals["calls"], totals["prompt_tokens"], totals["completion_tokens"]) == (12, 132, 84)
    assert totals["cost_usd"] == round(12 * COST, 9)


class _Rows:
    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.writes: list[tuple[dict[str, Any], dict[str, Any]]] = []

    async def update_one(self, query: dict[str, Any], update: dict[str, Any], upsert: bool) -> None:
        if self.fail:
            raise ConnectionError("store down")
        self.writes.append((query, update))


class _Store:
    def __init__(self, fail: bool = False) -> None:
        self.rows = _Rows(fail)

    async def collection(self, kind: str) -> _Rows:
        assert kind == USAGE_KIND
        return self.rows


async def test_usage_buckets_sum_what_arrives_while_a_write_is_pending_and_survive_a_failed_write() -> None:
    buckets = Buckets()
    store = _Store()
    fields = {"day": "d", "month": "m", "model": "p/m", "billed_to": "system"}
    for tokens in (1, 2, 3):
        buckets.add(
            "o", cast(TenantStore, store), "d|p/m|system", {"calls": 1, "prompt_tokens": tokens}, fields
        )
    await buckets.settled("o")
    assert store.rows.writes == [
        ({"_id": "d|p/m|system"}, {"$inc": {"calls": 3, "prompt_tokens": 6}, "$setOnInsert": fields})
    ]
    down = _Store(fail=True)
    buckets.add("o", cast(TenantStore, down), "d|p/m|system", {"calls": 1}, fields)
    await buckets.settled("o")  # logged, not raised: the answers were already sent
    buckets.add("o", cast(TenantStore, store), "d|p/m|system", {"calls": 1}, fields)
    await buckets.close()
    assert store.rows.writes[-1][1]["$inc"] == {"calls": 1}
