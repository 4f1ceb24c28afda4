"""Writes that race: the first documents of a new kb (which make its collection), and the same
document written by several calls at once — one write wins, the others give way cleanly (no
`internal`, no duplicate or foreign points left in the index)."""

from __future__ import annotations

import asyncio
from typing import Any

from mcpmesh.proto.errors import ErrorCode
from mcpmesh.rag.testing import Rag, org
from mcpmesh.service.testing import ToolFailed


async def _all(rag: Rag, org_id: str, tool: str, calls: list[dict[str, Any]]) -> list[Any]:
    return await asyncio.gather(*(rag.call(org_id, tool, args) for args in calls), return_exceptions=True)


async def _points(rag: Rag, org_id: str, kb: str) -> int:
    return await rag.harness.service.vectors.for_tenant(org_id).count(kb)


async def test_concurrent_first_ingests_into_a_new_kb_all_succeed(rag: Rag) -> None:
    a = org()
    await rag.call(a, "create_kb", {"kb": "fresh"})
    calls = [{"kb": "fresh", "content": f"Note {i}: code RC-{i:03d}.", "doc_id": f"n{i}"} for i in range(6)]
    added = await _all(rag, a, "add_document", calls)
    assert sorted(d["doc_id"] for d in added) == [f"n{i}" for i in range(6)], added
    assert (await rag.call(a, "get_kb", {"kb": "fresh"}))["documents"] == 6
    for i in range(6):
        hits = (await rag.call(a, "search", {"kb": "fresh", "query": f"RC-{i:03d}"}))["hits"]
        assert hits[0]["doc_id"] == f"n{i}"


async def test_the_same_document_added_at_once_is_added_once(rag: Rag) -> None:
    a = org()
    await rag.call(a, "create_kb", {"kb": "fresh"})
    content = "The same runbook, uploaded twice by a retrying client. " * 5
    # Same content; the titles differ, so the racing writes' points differ too.
    added = await _all(
        rag, a, "add_document", [{"kb": "fresh", "content": content, "title": f"t{i}"} for i in range(4)]
    )
    assert all(isinstance(d, dict) for d in added), added
    assert sorted(d["unchanged"] for d in added) == [False, True, True, True]
    assert {d["doc_id"] for d in added} == {added[0]["doc_id"]} and {d["version"] for d in added} == {1}
    kb = await rag.call(a, "get_kb", {"kb": "fresh"})
    assert (kb["documents"], kb["chunks"]) == (1, added[0]["chunks"])
    assert await _points(rag, a, "fresh") == added[0]["chunks"]  # the losers' points are gone


async def test_racing_different_content_under_one_doc_id_leaves_only_the_winner(rag: Rag) -> None:
    a = org()
    await rag.call(a, "create_kb", {"kb": "fresh"})
    calls = [
        {"kb": "fresh", "content": f"Version from writer {i}. " * (i + 1), "doc_id": "d"} for i in range(4)
    ]
    added = await _all(rag, a, "add_document", calls)
    won = [d for d in added if isinstance(d, dict)]
    lost = [d for d in added if isinstance(d, ToolFailed)]
    assert len(won) == 1 and len(lost) == 3, added
    assert all(f.error is not None and f.error.code == ErrorCode.CONFLICT for f in lost)
    doc = await rag.call(a, "get_document", {"kb": "fresh", "doc_id": "d"})
    assert doc["hash"] == won[0]["hash"]
    hits = (await rag.call(a, "search", {"kb": "fresh", "query": "version from writer", "top_k": 20}))["hits"]
    assert hits and all(h["text"] in doc["text"] for h in hits)
    assert await _points(rag, a, "fresh") == doc["chunks"]

    updates = [{"kb": "fresh", "doc_id": "d", "content": f"Update {i} of the document."} for i in range(3)]
    updated = await _all(rag, a, "update_document", updates)
    won = [d for d in updated if isinstance(d, dict)]
    assert len(won) == 1 and all(
        isinstance(d, ToolFailed) and d.error and d.error.code == ErrorCode.CONFLICT
        for d in updated
        if d not in won
    )
    doc = await rag.call(a, "get_document", {"kb": "fresh", "doc_id": "d"})
    assert doc["version"] == 2 and [v["version"] for v in doc["versions"]] == [1, 2]
    hits = (await rag.call(a, "search", {"kb": "fresh", "query": "update of the document", "top_k": 20}))[
        "hits"
    ]
    assert {h["version"] for h in hits} == {2} and all(h["text"] in doc["text"] for h in hits)
    assert await _points(rag, a, "fresh") == doc["chunks"]
    kb = await rag.call(a, "get_kb", {"kb": "fresh"})
    assert (kb["documents"], kb["chunks"]) == (1, doc["chunks"])
