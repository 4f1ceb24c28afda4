"""Storage: compression, windows that read only the window, hot/cold tiering, crash repair."""

from __future__ import annotations

import asyncio
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mcpmesh.context import ContextSettings, app_of, build_service
from mcpmesh.context.clock import utcnow
from mcpmesh.context.entries import PreparedEntry, entry_document
from mcpmesh.context.limits import context_count
from mcpmesh.context.sweep import sweep
from mcpmesh.context.testing import Mesh
from mcpmesh.proto.errors import MeshException
from mcpmesh.service import ServiceSettings
from mcpmesh.service.testing import LocalHarness, ToolFailed
from mcpmesh.store import Collection

A = "org-acme"
B = "org-globex"


def later(days: float = 30) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


async def _filled(mesh: Mesh, n: int, org: str = A, **create: Any) -> str:
    ctx_id = await mesh.create(org, **create)
    for start in range(0, n, 100):
        batch = [
            {"role": "user", "content": f"entry {i} " + "lorem " * (i % 7)}
            for i in range(start, min(n, start + 100))
        ]
        await mesh.call(org, "append", {"ctx_id": ctx_id, "entries": batch})
    return ctx_id


async def test_large_entries_are_stored_compressed_and_read_back_transparently(mesh: Mesh) -> None:
    ctx_id = await mesh.create(A)
    large = "The quick brown fox jumps over the lazy dog. " * 200  # 9 KB, compresses well
    await mesh.call(
        A,
        "append",
        {
            "ctx_id": ctx_id,
            "entries": [
                {"role": "user", "content": "small"},
                {"role": "assistant", "content": large},
            ],
        },
    )
    entries = await mesh.collection(A, "entries")
    small_doc, large_doc = await entries.find({"ctx_id": ctx_id}).sort("seq", 1).to_list(None)
    assert small_doc["content"] == "small" and "z" not in small_doc
    assert "content" not in large_doc and large_doc["zipped"] and len(large_doc["z"]) < len(large) / 10
    assert zlib.decompress(large_doc["z"]).decode() == large
    got = await mesh.call(A, "get", {"ctx_id": ctx_id})
    assert [e["content"] for e in got["entries"]] == ["small", large]


def test_only_entries_above_the_threshold_that_shrink_are_compressed() -> None:
    threshold = ContextSettings().compress_above_bytes

    def stored(content: str) -> dict[str, Any]:
        entry = PreparedEntry(role="user", content=content, name=None, tokens=1, size=len(content.encode()))
        return entry_document(
            "ctx-x", 0, 0, entry, created_at=utcnow(), reservation="r", compress_above=threshold
        )

    assert "content" in stored("a" * threshold)  # at the threshold: plain
    doc = stored("a" * (threshold + 1))  # above it: compressed, with its size kept for the reply budget
    assert "content" not in doc and doc["size"] == threshold + 1
    assert zlib.decompress(doc["z"]).decode() == "a" * (threshold + 1)


async def test_a_window_reads_only_the_window(mesh: Mesh) -> None:
    small = await _filled(mesh, 20)
    big = await _filled(mesh, 1_000)
    spied: list[dict[str, Any]] = []
    entries = await mesh.collection(A, "entries")
    cls = type(entries)
    original = cls.find

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.name.endswith("__entries"):
            spied.append(args[0])
        return original(self, *args, **kwargs)

    for ctx_id in (small, big):
        for window in ({"last_n": 5}, {"last_n_tokens": 40}):
            before = mesh.app.stats["entries_read"]
            spied.clear()
            cls.find = spy  # type: ignore[method-assign]
            try:
                got = await mesh.call(A, "get", {"ctx_id": ctx_id, **window})
            finally:
                cls.find = original  # type: ignore[method-assign]
            read = mesh.app.stats["entries_read"] - before
            assert read == len(got["entries"]) <= 5 + 40, (ctx_id, window, read)
            # one range query on the context's index: (ctx_id, seq) with a limit, or (ctx_id, tok_start)
            assert len(spied) == 1 and spied[0]["ctx_id"] == ctx_id
            assert "tok_start" in spied[0] if "last_n_tokens" in window else "tok_start" not in spied[0]
    last = await mesh.call(A, "get", {"ctx_id": big, "last_n_tokens": 40})
    assert last["entries"][-1]["seq"] == 999 and last["window"]["tokens"] <= 40


async def test_idle_contexts_move_to_cold_and_come_back_on_access(mesh: Mesh) -> None:
    ctx_id = await _filled(mesh, 150, title="old chat", namespace="archive", tags=["t"])
    fresh = await mesh.create(A, "fresh")
    before = await mesh.call(A, "get", {"ctx_id": ctx_id})
    report = await sweep(mesh.app, now=later())
    assert report["moved_to_cold"] == 2
    hot, hot_entries = await mesh.collection(A, "contexts"), await mesh.collection(A, "entries")
    cold, cold_entries = (
        await mesh.collection(A, "contexts_cold"),
        await mesh.collection(A, "entries_cold"),
    )
    assert await hot.count_documents({}) == 0 and await hot_entries.count_documents({}) == 0
    assert (
        await cold.count_documents({}) == 2 and await cold_entries.count_documents({"ctx_id": ctx_id}) == 150
    )
    # listing and searching see cold contexts without bringing them back
    listed = await mesh.call(A, "list", {"namespace": "archive"})
    assert [(c["ctx_id"], c["storage"], c["entry_count"]) for c in listed["contexts"]] == [
        (ctx_id, "cold", 150)
    ]
    found = await mesh.call(A, "search", {"text": "entry 149"})
    assert [c["ctx_id"] for c in found["contexts"]] == [ctx_id]
    assert await cold.count_documents({}) == 2
    # a get brings it back, whole and unchanged
    after = await mesh.call(A, "get", {"ctx_id": ctx_id})
    assert after["entries"] == before["entries"] and after["token_total"] == before["token_total"]
    assert (
        await cold.count_documents({"_id": ctx_id}) == 0
        and await cold_entries.count_documents({"ctx_id": ctx_id}) == 0
    )
    assert await hot_entries.count_documents({"ctx_id": ctx_id}) == 150
    assert [c["storage"] for c in (await mesh.call(A, "list", {"namespace": "archive"}))["contexts"]] == [
        "hot"
    ]
    # an append to a cold context restores it too and continues its seqs
    appended = await mesh.call(A, "append", {"ctx_id": fresh, "role": "user", "content": "back"})
    assert appended["first_seq"] == 0
    assert await cold.count_documents({}) == 0
    assert mesh.app.stats["restored"] == 2


async def test_recently_used_contexts_stay_hot(mesh: Mesh) -> None:
    idle = await mesh.create(A, "idle")
    used = await mesh.create(A, "used")
    hot = await mesh.collection(A, "contexts")
    await hot.update_one({"_id": idle}, {"$set": {"touched_at": utcnow() - timedelta(days=8)}})
    await mesh.call(A, "get", {"ctx_id": used})
    report = await sweep(mesh.app)  # real time: only `idle` is older than 7 days
    assert report["moved_to_cold"] == 1
    assert [c["storage"] for c in (await mesh.call(A, "list"))["contexts"]] == ["hot", "cold"]


async def test_update_delete_and_shared_access_work_on_cold_contexts(mesh: Mesh) -> None:
    to_update = await _filled(mesh, 3)
    to_delete = await _filled(mesh, 3)
    shared = await _filled(mesh, 3)
    await mesh.call(A, "share", {"ctx_id": shared, "grantee": B})
    await sweep(mesh.app, now=later())
    assert (await mesh.call(A, "update", {"ctx_id": to_update, "title": "renamed"}))["title"] == "renamed"
    await mesh.call(A, "delete", {"ctx_id": to_delete})
    cold_entries = await mesh.collection(A, "entries_cold")
    assert await cold_entries.count_documents({"ctx_id": to_delete}) == 0
    assert mesh.app.stats["restored"] == 1  # deleting did not restore it first
    assert len((await mesh.call(B, "get", {"ctx_id": shared}))["entries"]) == 3
    assert await context_count(mesh.app, mesh.tenant(A)) == 2


# The sweeps below pretend 30 days passed: a pending reservation older than that would be
# repaired (tested below); here the race is with tiering only.
@pytest.mark.parametrize(
    "context_settings", [ContextSettings(sweep_interval_s=0, pending_stale_s=3650 * 86400.0)]
)
async def test_appends_racing_with_sweeps_stay_consistent(mesh: Mesh) -> None:
    ctx_id = await mesh.create(A)

    async def appender(i: int) -> None:
        await mesh.call(
            A, "append", {"ctx_id": ctx_id, "entries": [{"role": "user", "content": f"m{i}"}] * 2}
        )

    async def sweeper() -> None:
        for _ in range(10):
            await sweep(mesh.app, now=later())
            await asyncio.sleep(0)

    await asyncio.gather(*(appender(i) for i in range(40)), sweeper())
    got = await mesh.call(A, "get", {"ctx_id": ctx_id})
    assert [e["seq"] for e in got["entries"]] == list(range(80))
    assert got["entry_count"] == 80 and got["token_total"] == sum(e["tokens"] for e in got["entries"])
    for i in range(0, 80, 2):
        assert got["entries"][i]["content"] == got["entries"][i + 1]["content"]


@pytest.mark.parametrize("context_settings", [ContextSettings(sweep_interval_s=0.05, cold_after_s=1)])
async def test_the_background_sweep_runs_on_its_own(mesh: Mesh) -> None:
    ctx_id = await mesh.create(A)
    hot = await mesh.collection(A, "contexts")
    await hot.update_one({"_id": ctx_id}, {"$set": {"touched_at": utcnow() - timedelta(seconds=5)}})
    cold = await mesh.collection(A, "contexts_cold")
    for _ in range(100):
        if await cold.count_documents({"_id": ctx_id}):
            break
        await asyncio.sleep(0.05)
    assert await cold.count_documents({"_id": ctx_id}) == 1
    assert mesh.app.sweeper is not None


async def test_the_sweep_is_part_of_the_lifespan_and_stops_with_the_service(mongo_url: str) -> None:
    service = build_service(ContextSettings(sweep_interval_s=0.05))
    with pytest.raises(MeshException, match="not running"):
        app_of(service)  # no state before start: nothing is patched onto the service
    settings = ServiceSettings(mongodb_url=mongo_url, mongodb_database=f"ctx_test_{uuid.uuid4().hex[:10]}")
    async with LocalHarness(service, settings=settings):
        app = app_of(service)
        task = app.sweeper
        assert task is not None and not task.done()
    assert task.cancelled() and app.sweeper is None


async def test_appends_in_flight_are_hidden_until_they_commit(mesh: Mesh) -> None:
    ctx_id = await _filled(mesh, 2)
    contexts = await mesh.collection(A, "contexts")
    entries = await mesh.collection(A, "entries")
    # an append that reserved seq 2 and wrote its entry but has not committed yet
    await contexts.update_one(
        {"_id": ctx_id},
        {
            "$inc": {"next_seq": 1, "token_total": 3},
            "$push": {"pending": {"r": "r1", "n": 1, "t": 3, "at": utcnow()}},
        },
    )
    await entries.insert_one(
        {
            "_id": f"{ctx_id}:0000000002",
            "ctx_id": ctx_id,
            "seq": 2,
            "tok_start": 999,
            "tokens": 3,
            "role": "user",
            "content": "in flight",
            "created_at": utcnow(),
            "r": "r1",
        }
    )
    got = await mesh.call(A, "get", {"ctx_id": ctx_id})
    assert [e["seq"] for e in got["entries"]] == [0, 1] and got["entry_count"] == 2


async def test_stale_appends_are_committed_if_complete_else_removed(mesh: Mesh) -> None:
    ctx_id = await _filled(mesh, 1)
    contexts = await mesh.collection(A, "contexts")
    entries = await mesh.collection(A, "entries")
    doc = await contexts.find_one({"_id": ctx_id})
    assert doc is not None
    tok = doc["token_total"]
    old = utcnow() - timedelta(hours=1)
    # reservation r-ok wrote its 1 entry and died before committing; r-bad wrote 1 of its 2
    await contexts.update_one(
        {"_id": ctx_id},
        {
            "$inc": {"next_seq": 3, "token_total": 6},
            "$push": {
                "pending": {
                    "$each": [
                        {"r": "r-ok", "n": 1, "t": 2, "at": old},
                        {"r": "r-bad", "n": 2, "t": 4, "at": old},
                    ]
                }
            },
        },
    )
    await entries.insert_many(
        [
            {
                "_id": f"{ctx_id}:0000000001",
                "ctx_id": ctx_id,
                "seq": 1,
                "tok_start": tok,
                "tokens": 2,
                "role": "user",
                "content": "complete",
                "created_at": old,
                "r": "r-ok",
            },
            {
                "_id": f"{ctx_id}:0000000002",
                "ctx_id": ctx_id,
                "seq": 2,
                "tok_start": tok + 2,
                "tokens": 2,
                "role": "user",
                "content": "half",
                "created_at": old,
                "r": "r-bad",
            },
        ]
    )
    got = await mesh.call(A, "get", {"ctx_id": ctx_id})
    assert [e["content"] for e in got["entries"]][1:] == ["complete"]
    assert got["entry_count"] == 2 and got["token_total"] == tok + 2
    assert await entries.count_documents({"ctx_id": ctx_id, "r": "r-bad"}) == 0
    assert (mesh.app.stats["pending_committed"], mesh.app.stats["pending_removed"]) == (1, 1)
    appended = await mesh.call(A, "append", {"ctx_id": ctx_id, "role": "user", "content": "next"})
    assert appended["first_seq"] == 4  # after the hole left by r-bad


async def _held_append(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, Collection, asyncio.Event, asyncio.Task[Any]]:
    """A context with one entry, and an append to it that reserved seq 1 and waits for the event
    returned before writing its entry (so the repair can look at it first)."""
    ctx_id = await _filled(mesh, 1)
    entries = await mesh.collection(A, "entries")
    insert_many = type(entries).insert_many
    go, waiting = asyncio.Event(), asyncio.Event()

    async def held(self: Collection, docs: Any, *args: Any, **kwargs: Any) -> Any:
        if not waiting.is_set() and self.name == entries.name:
            waiting.set()
            await go.wait()
        return await insert_many(self, docs, *args, **kwargs)

    monkeypatch.setattr(type(entries), "insert_many", held)
    appending = asyncio.create_task(
        mesh.call(A, "append", {"ctx_id": ctx_id, "role": "user", "content": "late"})
    )
    await waiting.wait()
    return ctx_id, entries, go, appending


async def test_an_append_committing_while_it_is_repaired_keeps_its_entries(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx_id, entries, go, appending = await _held_append(mesh, monkeypatch)
    count_documents = type(entries).count_documents

    async def count_then_let_the_append_finish(
        self: Collection, query: Any, *args: Any, **kwargs: Any
    ) -> int:
        counted = await count_documents(self, query, *args, **kwargs)
        if "r" in query and not go.is_set():  # the repair counted 0 of 1: the append commits now
            go.set()
            await appending
        return counted

    monkeypatch.setattr(type(entries), "count_documents", count_then_let_the_append_finish)
    await sweep(mesh.app, now=later())  # sees the reservation as stale
    assert (await appending)["first_seq"] == 1
    got = await mesh.call(A, "get", {"ctx_id": ctx_id})
    assert [e["content"] for e in got["entries"]][1:] == ["late"] and got["entry_count"] == 2
    assert mesh.app.stats["pending_removed"] == 0


async def test_an_append_aborted_by_the_repair_fails_and_leaves_nothing(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx_id, entries, go, appending = await _held_append(mesh, monkeypatch)
    report = await sweep(mesh.app, now=later())  # aborts it (nothing written yet), moves it to cold
    assert report["repaired"] == 1 and report["moved_to_cold"] == 1
    go.set()  # the append writes anyway, then learns it was aborted
    with pytest.raises(ToolFailed) as failed:
        await appending
    assert failed.value.error is not None and failed.value.error.code == "unavailable"
    assert "rolled back; retry" in failed.value.text
    assert await entries.count_documents({"ctx_id": ctx_id}) == 0  # its late write is gone
    assert await (await mesh.collection(A, "entries_cold")).count_documents({"ctx_id": ctx_id}) == 1
    got = await mesh.call(A, "get", {"ctx_id": ctx_id})
    assert got["entry_count"] == 1 and [e["seq"] for e in got["entries"]] == [0]
    assert (await mesh.call(A, "append", {"ctx_id": ctx_id, "role": "user", "content": "next"}))[
        "first_seq"
    ] == 2


async def test_a_move_interrupted_by_a_crash_is_finished_by_the_next_caller(mesh: Mesh) -> None:
    ctx_id = await _filled(mesh, 30)
    before = await mesh.call(A, "get", {"ctx_id": ctx_id})
    hot, hot_entries = await mesh.collection(A, "contexts"), await mesh.collection(A, "entries")
    cold_entries = await mesh.collection(A, "entries_cold")
    # the sweep took the lock and copied 10 entries to cold, then its process died
    old = utcnow() - timedelta(hours=1)
    await hot.update_one({"_id": ctx_id}, {"$set": {"lock": {"op": "cold", "at": old, "token": "dead"}}})
    await cold_entries.insert_many(
        await hot_entries.find({"ctx_id": ctx_id}).sort("seq", 1).limit(10).to_list(None)
    )
    after = await mesh.call(A, "get", {"ctx_id": ctx_id})  # finishes the move, then restores
    assert after["entries"] == before["entries"]
    assert mesh.app.stats["resumed_cold"] == 1 and mesh.app.stats["restored"] == 1
    assert await cold_entries.count_documents({}) == 0


async def test_a_restore_interrupted_after_writing_the_hot_doc_keeps_newer_data(mesh: Mesh) -> None:
    ctx_id = await _filled(mesh, 5)
    await sweep(mesh.app, now=later())
    hot, hot_entries = await mesh.collection(A, "contexts"), await mesh.collection(A, "entries")
    cold, cold_entries = (
        await mesh.collection(A, "contexts_cold"),
        await mesh.collection(A, "entries_cold"),
    )
    # a restore did steps 1-3 (entries moved, hot doc written) and died before deleting the cold doc
    old = utcnow() - timedelta(hours=1)
    cold_doc = await cold.find_one_and_update(
        {"_id": ctx_id}, {"$set": {"lock": {"op": "hot", "at": old, "token": "dead"}}}
    )
    assert cold_doc is not None
    await hot_entries.insert_many(await cold_entries.find({"ctx_id": ctx_id}).to_list(None))
    await cold_entries.delete_many({"ctx_id": ctx_id})
    await hot.insert_one({**cold_doc, "touched_at": utcnow()})
    await mesh.call(A, "append", {"ctx_id": ctx_id, "role": "user", "content": "newer"})
    report = await sweep(mesh.app)  # resumes the stale restore: must not overwrite the newer hot doc
    assert report["resumed"] == 1
    assert await cold.count_documents({}) == 0
    got = await mesh.call(A, "get", {"ctx_id": ctx_id})
    assert got["entry_count"] == 6 and got["entries"][-1]["content"] == "newer"


async def test_a_delete_interrupted_by_a_crash_is_finished(mesh: Mesh) -> None:
    ctx_id = await _filled(mesh, 3)
    await mesh.call(A, "share", {"ctx_id": ctx_id, "grantee": B})
    hot = await mesh.collection(A, "contexts")
    old = utcnow() - timedelta(hours=1)
    await hot.update_one({"_id": ctx_id}, {"$set": {"lock": {"op": "delete", "at": old, "token": "dead"}}})
    assert "not found" in await mesh.fails(A, "get", {"ctx_id": ctx_id})
    assert await (await mesh.collection(A, "entries")).count_documents({}) == 0
    assert await (await mesh.collection(B, "grants")).count_documents({}) == 0
    assert await context_count(mesh.app, mesh.tenant(A)) == 0


async def test_a_context_being_moved_makes_callers_wait_not_fail(mesh: Mesh) -> None:
    ctx_id = await _filled(mesh, 3)
    hot = await mesh.collection(A, "contexts")
    await hot.update_one({"_id": ctx_id}, {"$set": {"lock": {"op": "cold", "at": utcnow(), "token": "live"}}})

    async def release() -> None:
        await asyncio.sleep(0.2)
        await hot.update_one({"_id": ctx_id}, {"$unset": {"lock": ""}})

    got, _ = await asyncio.gather(mesh.call(A, "get", {"ctx_id": ctx_id}), release())
    assert len(got["entries"]) == 3


@pytest.mark.parametrize("context_settings", [ContextSettings(sweep_interval_s=0, busy_wait_s=0.2)])
async def test_a_context_busy_too_long_gets_a_retryable_error(mesh: Mesh) -> None:
    ctx_id = await _filled(mesh, 1)
    hot = await mesh.collection(A, "contexts")
    await hot.update_one({"_id": ctx_id}, {"$set": {"lock": {"op": "cold", "at": utcnow(), "token": "live"}}})
    assert "unavailable" in await mesh.fails(A, "get", {"ctx_id": ctx_id})


async def test_expired_shares_are_tidied_by_the_sweep(mesh: Mesh) -> None:
    ctx_id = await mesh.create(A)
    await mesh.call(A, "share", {"ctx_id": ctx_id, "grantee": B, "expires_in_s": 60})
    await mesh.call(A, "share", {"ctx_id": ctx_id, "grantee": "org-initech"})
    report = await sweep(mesh.app, now=utcnow() + timedelta(minutes=2))
    assert report["expired_shares"] == 1
    assert [s["grantee"] for s in (await mesh.call(A, "list_shares"))["shares"]] == ["org-initech"]
    assert await (await mesh.collection(B, "grants")).count_documents({}) == 0
