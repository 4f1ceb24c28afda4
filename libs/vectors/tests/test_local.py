"""Local mode runs on a worker thread of its own: the event loop keeps going during its calls."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from qdrant_client.local.local_collection import LocalCollection

from mcpmesh.vectors import HybridPoint, HybridQuery, Point, SparseTerms, Vectors, connect_qdrant

TICKS = 3


@pytest.mark.parametrize("where", ["path", ":memory:"])
async def test_the_event_loop_runs_while_a_local_search_is_under_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """The search, once inside local mode, waits until the loop has ticked TICKS times: on the
    loop itself (before) it would see no tick and its result would come back with none seen."""
    client = connect_qdrant(None, path=":memory:" if where == ":memory:" else str(tmp_path / "q"))
    kb = Vectors(client).for_tenant("org-abc")
    await kb.ensure_hybrid_kb("docs", 3)
    await kb.upsert(
        "docs", [HybridPoint(i, [1.0, float(i), 0.0], SparseTerms([i], [1.0])) for i in range(50)]
    )
    searching, ticked = threading.Event(), threading.Event()
    real = LocalCollection.query_points

    def gated(self: LocalCollection, *args: Any, **kwargs: Any) -> Any:
        searching.set()
        ticked.wait(timeout=5)  # a safety net only: the test asserts on ticks, not on time
        return real(self, *args, **kwargs)

    monkeypatch.setattr(LocalCollection, "query_points", gated)
    ticks_during_search = 0

    async def tick() -> None:
        nonlocal ticks_during_search
        while True:
            await asyncio.sleep(0)
            if searching.is_set():
                ticks_during_search += 1
                if ticks_during_search >= TICKS:
                    ticked.set()

    ticker = asyncio.create_task(tick())
    try:
        hits = await kb.hybrid_search(
            "docs", HybridQuery(dense=[1.0, 0.0, 0.0], sparse=SparseTerms([7], [1.0]))
        )
        seen = ticks_during_search
    finally:
        ticker.cancel()
        await client.close()
    assert seen >= TICKS
    assert 7 in [hit.id for hit in hits]


async def test_calls_run_in_the_order_they_were_made() -> None:
    client = connect_qdrant(None, path=":memory:")
    kb = Vectors(client).for_tenant("org-abc")
    await kb.ensure_kb("docs", 2)
    try:
        *_, hits = await asyncio.gather(
            *(kb.upsert("docs", [Point(1, [1.0, 0.0], {"v": v})]) for v in range(20)),
            kb.search("docs", [1.0, 0.0]),
        )
    finally:
        await client.close()
    assert [hit.payload["v"] for hit in hits] == [19]


def workers() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("qdrant-local")}


async def test_close_ends_the_thread_and_later_calls_are_refused(tmp_path: Path) -> None:
    before = workers()
    client = connect_qdrant(None, path=str(tmp_path / "q"))
    kb = Vectors(client).for_tenant("org-abc")
    await kb.ensure_hybrid_kb("docs", 3)
    await kb.upsert("docs", [HybridPoint(5, [1.0, 0.0, 0.0], SparseTerms([9], [2.0]), {"t": "five"})])
    mine = workers() - before
    assert len(mine) == 1
    await client.close()
    assert not any(thread.is_alive() for thread in mine)
    with pytest.raises(RuntimeError, match="after shutdown"):
        await kb.count("docs")
    reopened = connect_qdrant(None, path=str(tmp_path / "q"))  # the directory's lock was released
    try:
        again = Vectors(reopened).for_tenant("org-abc")
        hits = await again.hybrid_search(
            "docs", HybridQuery(dense=[0.0, 1.0, 0.0], sparse=SparseTerms([9], [1.0]))
        )
        assert [(hit.id, hit.payload) for hit in hits] == [(5, {"t": "five"})]
    finally:
        await reopened.close()


def test_a_refused_second_client_leaves_no_thread_behind(tmp_path: Path) -> None:
    first = connect_qdrant(None, path=str(tmp_path / "q"))
    before = workers()
    with pytest.raises(RuntimeError):  # QdrantPathInUse (tests/test_connection.py)
        connect_qdrant(None, path=str(tmp_path / "q"))
    assert workers() == before
    asyncio.run(first.close())
