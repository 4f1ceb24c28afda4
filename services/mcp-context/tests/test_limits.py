"""Tier limits (context count, tokens per context) hold, also under concurrency, and a failed
write leaves nothing behind."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mcpmesh.context import ContextSettings
from mcpmesh.context.appends import _reserve, _roll_back, _write
from mcpmesh.context.entries import PreparedEntry
from mcpmesh.context.limits import context_count
from mcpmesh.context.testing import Mesh, unique_org
from mcpmesh.service.testing import ToolFailed


def words(n: int) -> str:
    """n tokens in cl100k_base: "word word ... word"."""
    return " ".join(["word"] * n)


async def test_max_contexts_holds_and_frees_on_delete(mesh: Mesh) -> None:
    org = unique_org()
    await mesh.publish_settings(org, max_contexts=3)
    ids = [await mesh.create(org, f"c{i}") for i in range(3)]
    text = await mesh.fails(org, "create", {"title": "one too many"})
    assert "limit_exceeded" in text and "3 contexts" in text
    assert len((await mesh.call(org, "list"))["contexts"]) == 3
    await mesh.call(org, "delete", {"ctx_id": ids[0]})
    await mesh.create(org, "fits again")
    assert await context_count(mesh.app, mesh.tenant(org)) == 3


async def test_max_contexts_holds_under_concurrent_creates(mesh: Mesh) -> None:
    org = unique_org()
    await mesh.publish_settings(org, max_contexts=5)
    results = await asyncio.gather(
        *(mesh.call(org, "create", {"title": f"c{i}"}) for i in range(25)), return_exceptions=True
    )
    created = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, ToolFailed)]
    assert len(created) == 5 and len(refused) == 20
    assert all("limit_exceeded" in r.text for r in refused)
    listed = await mesh.call(org, "list", {"limit": 100})
    assert sorted(c["ctx_id"] for c in listed["contexts"]) == sorted(c["ctx_id"] for c in created)
    assert await context_count(mesh.app, mesh.tenant(org)) == 5


async def test_tier_defaults_apply_without_published_settings(mesh: Mesh) -> None:
    org = unique_org()
    free_cap = 20_000  # the free tier's max_tokens_per_context
    stamp = mesh.harness.stamp(org, ["context:*"], tier="free")
    ctx_id = (await mesh.harness.call_tool(org, "create", {"title": "free"}, stamp=stamp))["ctx_id"]
    big = words(12_000)  # 12,000 tokens
    await mesh.harness.call_tool(
        org, "append", {"ctx_id": ctx_id, "role": "user", "content": big}, stamp=stamp
    )
    with pytest.raises(ToolFailed) as info:
        await mesh.harness.call_tool(
            org, "append", {"ctx_id": ctx_id, "role": "user", "content": big}, stamp=stamp
        )
    assert f"limit of {free_cap} tokens" in info.value.text


async def test_token_cap_refuses_the_whole_append(mesh: Mesh) -> None:
    org = unique_org()
    await mesh.publish_settings(org, max_tokens_per_context=50)
    ctx_id = await mesh.create(org)
    await mesh.call(org, "append", {"ctx_id": ctx_id, "role": "user", "content": words(30)})
    text = await mesh.fails(
        org,
        "append",
        {
            "ctx_id": ctx_id,
            "entries": [
                {"role": "user", "content": words(10)},
                {"role": "assistant", "content": words(11)},
            ],
        },
    )
    assert "limit_exceeded" in text and "limit of 50 tokens" in text and "30 already used" in text
    got = await mesh.call(org, "get", {"ctx_id": ctx_id})
    assert (got["entry_count"], got["token_total"], len(got["entries"])) == (1, 30, 1)
    await mesh.call(org, "append", {"ctx_id": ctx_id, "role": "user", "content": words(20)})  # exactly 50
    assert (await mesh.call(org, "get", {"ctx_id": ctx_id}))["token_total"] == 50


async def test_initial_entries_over_the_cap_create_nothing(mesh: Mesh) -> None:
    org = unique_org()
    await mesh.publish_settings(org, max_tokens_per_context=10)
    text = await mesh.fails(
        org, "create", {"title": "t", "entries": [{"role": "user", "content": words(11)}]}
    )
    assert "limit_exceeded" in text
    assert (await mesh.call(org, "list"))["contexts"] == []
    assert await context_count(mesh.app, mesh.tenant(org)) == 0


async def test_concurrent_appends_never_exceed_the_cap_and_keep_seqs_contiguous(mesh: Mesh) -> None:
    org = unique_org()
    grantee = unique_org()
    cap = 1_000
    await mesh.publish_settings(org, max_tokens_per_context=cap)
    ctx_id = await mesh.create(org)
    await mesh.call(org, "share", {"ctx_id": ctx_id, "grantee": grantee, "access": "write"})
    per_entry = mesh.app.counter.count("alpha beta gamma delta epsilon")
    assert per_entry == 5

    def append(i: int) -> Any:
        who = org if i % 3 else grantee  # the owner and a grantee with write access, interleaved
        entries = [{"role": "user", "content": "alpha beta gamma delta epsilon", "name": f"a{i}"}] * 3
        return mesh.call(who, "append", {"ctx_id": ctx_id, "entries": entries})

    results = await asyncio.gather(*(append(i) for i in range(120)), return_exceptions=True)
    ok = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if not isinstance(r, dict)]
    assert len(ok) == cap // (3 * per_entry)  # 66 appends of 15 tokens fit in 1,000
    assert all(isinstance(r, ToolFailed) and "limit_exceeded" in r.text for r in refused)
    got = await mesh.call(org, "get", {"ctx_id": ctx_id})
    seqs = [e["seq"] for e in got["entries"]]
    assert seqs == list(range(len(ok) * 3))  # contiguous, no duplicates, no holes
    assert got["token_total"] == sum(e["tokens"] for e in got["entries"]) == len(ok) * 15 <= cap
    assert got["entry_count"] == len(seqs)
    for result in ok:  # each append's entries are consecutive
        names = {e["name"] for e in got["entries"][result["first_seq"] : result["last_seq"] + 1]}
        assert len(names) == 1
    contexts = await mesh.collection(org, "contexts")
    doc = await contexts.find_one({"_id": ctx_id})
    assert doc is not None and doc["pending"] == [] and doc["token_total"] <= cap


@pytest.mark.parametrize(
    "context_settings",
    [ContextSettings(sweep_interval_s=0, max_entries_per_append=3, max_entries_per_context=5)],
)
async def test_entry_count_limits(mesh: Mesh) -> None:
    org = unique_org()
    ctx_id = await mesh.create(org)
    entries = [{"role": "user", "content": "x"}] * 4
    assert "at most 3 entries" in await mesh.fails(org, "append", {"ctx_id": ctx_id, "entries": entries})
    await mesh.call(org, "append", {"ctx_id": ctx_id, "entries": entries[:3]})
    text = await mesh.fails(org, "append", {"ctx_id": ctx_id, "entries": entries[:3]})
    assert "limit_exceeded" in text and "5 entries per context" in text
    await mesh.call(org, "append", {"ctx_id": ctx_id, "entries": entries[:2]})
    assert (await mesh.call(org, "get", {"ctx_id": ctx_id}))["entry_count"] == 5


async def test_a_failed_write_leaves_nothing_and_gives_the_reservation_back(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = unique_org()
    ctx_id = await mesh.create(org)
    await mesh.call(org, "append", {"ctx_id": ctx_id, "role": "user", "content": "before"})
    entries = await mesh.collection(org, "entries")
    cls = type(entries)
    original = cls.insert_many

    async def half_then_fail(self: Any, docs: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
        if self.name.endswith("__entries"):
            await original(self, docs[:1], *args, **kwargs)  # one document lands, then the database goes away
            raise ConnectionError("connection reset")
        return await original(self, docs, *args, **kwargs)

    monkeypatch.setattr(cls, "insert_many", half_then_fail)
    text = await mesh.fails(
        org,
        "append",
        {
            "ctx_id": ctx_id,
            "entries": [
                {"role": "user", "content": "one"},
                {"role": "assistant", "content": "two"},
            ],
        },
    )
    assert "nothing was appended" in text and "connection reset" not in text
    monkeypatch.setattr(cls, "insert_many", original)
    assert await entries.count_documents({"ctx_id": ctx_id}) == 1
    contexts = await mesh.collection(org, "contexts")
    doc = await contexts.find_one({"_id": ctx_id})
    assert doc is not None and (doc["next_seq"], doc["pending"], doc.get("hole_entries")) == (1, [], 0)
    after = await mesh.call(org, "append", {"ctx_id": ctx_id, "role": "user", "content": "after"})
    assert after["first_seq"] == 1
    got = await mesh.call(org, "get", {"ctx_id": ctx_id})
    assert [e["content"] for e in got["entries"]] == ["before", "after"]
    assert got["token_total"] == sum(e["tokens"] for e in got["entries"])


async def test_create_with_entries_whose_write_fails_creates_nothing(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = unique_org()
    entries = await mesh.collection(org, "entries")
    cls = type(entries)
    original = cls.insert_many

    async def fail(self: Any, docs: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
        if self.name.endswith("__entries"):
            raise ConnectionError("connection reset")
        return await original(self, docs, *args, **kwargs)

    monkeypatch.setattr(cls, "insert_many", fail)
    await mesh.fails(org, "create", {"title": "t", "entries": [{"role": "user", "content": "x"}]})
    monkeypatch.setattr(cls, "insert_many", original)
    assert (await mesh.call(org, "list"))["contexts"] == []
    assert await context_count(mesh.app, mesh.tenant(org)) == 0


async def test_a_failed_append_that_is_not_the_last_leaves_a_counted_hole(mesh: Mesh) -> None:
    org = unique_org()
    await mesh.publish_settings(org, max_tokens_per_context=7)
    ctx_id = await mesh.create(org)
    entry = PreparedEntry(role="user", content="hello there", name=None, tokens=2, size=11)
    first = await _reserve(mesh.app, mesh.tenant(org), ctx_id, 2, 4, cap=100, tier="pro")
    second = await _reserve(mesh.app, mesh.tenant(org), ctx_id, 1, 2, cap=100, tier="pro")
    await _write(mesh.app, second, [entry])
    await _roll_back(mesh.app, first)  # cannot give seqs 0-1 back: seq 2 is taken
    got = await mesh.call(org, "get", {"ctx_id": ctx_id})
    assert [e["seq"] for e in got["entries"]] == [2]
    assert (got["entry_count"], got["token_total"]) == (1, 2)
    contexts = await mesh.collection(org, "contexts")
    doc = await contexts.find_one({"_id": ctx_id})
    assert doc is not None and (doc["hole_entries"], doc["hole_tokens"], doc["token_total"]) == (2, 4, 6)
    # the hole's tokens still count against the cap (7): conservative, never over it
    assert "limit_exceeded" in await mesh.fails(
        org, "append", {"ctx_id": ctx_id, "role": "user", "content": "a b"}
    )
