"""Knowledge bases, documents, hybrid search and answers, end to end over the bus with mcp-llm."""

from __future__ import annotations

import pytest

from mcpmesh.proto.errors import ErrorCode
from mcpmesh.rag import RagSettings, build_service
from mcpmesh.rag.testing import Rag, org
from mcpmesh.service import StartupError

GUIDE = """# Deployment guide

Intro paragraph about deploying the platform on a cluster.

## Databases

The metadata lives in MongoDB replicas. Backups run nightly at two in the morning.

## Troubleshooting

If the gateway answers with error XK-9921 the signing key rotated: restart the replicas.
"""


async def test_kb_documents_and_citations(rag: Rag) -> None:
    a = org()
    created = await rag.call(a, "create_kb", {"kb": "docs", "title": "Docs"})
    assert created["owner_org"] == a and created["documents"] == 0
    added = await rag.call(
        a, "add_document", {"kb": "docs", "content": GUIDE, "type": "markdown", "doc_id": "guide"}
    )
    assert added["version"] == 1 and added["chunks"] >= 3 and added["unchanged"] is False
    again = await rag.call(
        a, "add_document", {"kb": "docs", "content": GUIDE, "type": "markdown", "doc_id": "guide"}
    )
    assert again["unchanged"] is True and again["version"] == 1

    found = await rag.call(a, "search", {"kb": "docs", "query": "XK-9921"})
    top = found["hits"][0]
    assert top["doc_id"] == "guide" and top["section"] == "Deployment guide > Troubleshooting"
    doc = await rag.call(a, "get_document", {"kb": "docs", "doc_id": "guide"})
    assert "XK-9921" in doc["text"][top["start"] : top["end"]] == top["text"]
    assert top["owner_org"] == a and top["version"] == 1 and top["kb"] == "docs"

    kb = await rag.call(a, "get_kb", {"kb": "docs"})
    assert (kb["documents"], kb["chunks"]) == (1, added["chunks"])


async def test_update_makes_a_version_and_delete_removes_vectors(rag: Rag) -> None:
    a = org()
    await rag.call(a, "create_kb", {"kb": "docs"})
    await rag.call(
        a,
        "add_document",
        {"kb": "docs", "content": "The old password rule: eight letters.", "doc_id": "rules"},
    )
    updated = await rag.call(
        a,
        "update_document",
        {"kb": "docs", "doc_id": "rules", "content": "The new password rule: sixteen letters."},
    )
    assert updated["version"] == 2 and [v["version"] for v in updated["versions"]] == [1, 2]
    hits = (await rag.call(a, "search", {"kb": "docs", "query": "password rule letters"}))["hits"]
    assert {h["version"] for h in hits} == {2} and all("sixteen" in h["text"] for h in hits)
    await rag.call(a, "delete_document", {"kb": "docs", "doc_id": "rules"})
    assert (await rag.call(a, "search", {"kb": "docs", "query": "password rule letters"}))["hits"] == []
    assert (await rag.call(a, "get_kb", {"kb": "docs"}))["chunks"] == 0
    failed = await rag.fails(a, "get_document", {"kb": "docs", "doc_id": "rules"})
    assert failed.error is not None and failed.error.code == ErrorCode.NOT_FOUND


async def test_hybrid_lexical_match_and_filter(rag: Rag) -> None:
    a = org()
    await rag.call(a, "create_kb", {"kb": "kb1"})
    await rag.call(
        a,
        "add_document",
        {
            "kb": "kb1",
            "content": "Invoices are paid within thirty days.",
            "doc_id": "pay",
            "metadata": {"team": "finance"},
        },
    )
    await rag.call(
        a,
        "add_document",
        {"kb": "kb1", "content": "Servers restart on Sundays.", "doc_id": "ops", "metadata": {"team": "ops"}},
    )
    # Only one word in common with the query: dense similarity is low, the lexical prefetch finds it.
    hits = (
        await rag.call(
            a,
            "search",
            {"kb": "kb1", "query": "when are the invoices settled and by whom exactly", "min_score": 0.9},
        )
    )["hits"]
    assert [h["doc_id"] for h in hits] == ["pay"]
    question = {"kb": "kb1", "query": "when are the invoices settled and by whom exactly", "min_score": 0.9}
    dense_only = await rag.call(a, "search", {**question, "dense_weight": 1.0})
    assert dense_only["hits"] == []  # the dense retriever alone misses it
    lexical_only = await rag.call(a, "search", {**question, "dense_weight": 0.0})
    assert [h["doc_id"] for h in lexical_only["hits"]] == ["pay"]
    only_ops = (
        await rag.call(
            a, "search", {"kb": "kb1", "query": "invoices servers", "filter": {"meta.team": "ops"}}
        )
    )["hits"]
    assert {h["doc_id"] for h in only_ops} == {"ops"}


async def test_answer_cites_sources_and_refuses_without_them(rag: Rag) -> None:
    a = org()
    await rag.call(a, "create_kb", {"kb": "kb1"})
    await rag.call(
        a,
        "add_document",
        {"kb": "kb1", "content": "Backups run nightly at two in the morning.", "doc_id": "b"},
    )
    answered = await rag.call(a, "answer", {"kb": "kb1", "question": "When do backups run?"})
    assert answered["answered"] is True and answered["sources"][0]["doc_id"] == "b"
    assert "[1]" in answered["answer"]  # cited (the offline model echoes the question: attribution adds them)
    none = await rag.call(a, "answer", {"kb": "kb1", "question": "quantum chromodynamics gluon"})
    assert none["answered"] is False and none["sources"] == []


async def test_isolation(rag: Rag) -> None:
    a, b = org(), org()
    await rag.call(a, "create_kb", {"kb": "secret"})
    await rag.call(a, "add_document", {"kb": "secret", "content": "A's private plan.", "doc_id": "plan"})
    for tool, args in [
        ("search", {"kb": "secret", "query": "plan"}),
        ("get_kb", {"kb": "secret"}),
        ("get_document", {"kb": "secret", "doc_id": "plan"}),
        ("list_documents", {"kb": "secret"}),
        ("add_document", {"kb": "secret", "content": "B was here"}),
        ("delete_document", {"kb": "secret", "doc_id": "plan"}),
        ("delete_kb", {"kb": "secret"}),
    ]:
        failed = await rag.fails(b, tool, args)
        assert failed.error is not None and failed.error.code == ErrorCode.NOT_FOUND, tool
    assert (await rag.call(b, "list_kbs"))["knowledge_bases"] == []
    # B's own kb of the same name is B's, and holds nothing of A's.
    await rag.call(b, "create_kb", {"kb": "secret"})
    await rag.call(b, "add_document", {"kb": "secret", "content": "B's notes about lunch."})
    hits = (await rag.call(b, "search", {"kb": "secret", "query": "private plan"}))["hits"]
    assert all(h["owner_org"] == b and "A's" not in h["text"] for h in hits)


async def test_bad_input_and_limits(rag: Rag) -> None:
    a = org()
    await rag.call(a, "create_kb", {"kb": "kb1"})
    cases = [
        ("create_kb", {"kb": "Bad Name"}, ErrorCode.INVALID_REQUEST),
        ("create_kb", {"kb": "kb1"}, ErrorCode.CONFLICT),
        ("add_document", {"kb": "kb1", "content": "  \n "}, ErrorCode.INVALID_REQUEST),
        ("add_document", {"kb": "kb1", "content": "x", "type": "pdfx"}, ErrorCode.INVALID_REQUEST),
        ("add_document", {"kb": "kb1", "content": "{not json", "type": "jsonl"}, ErrorCode.INVALID_REQUEST),
        ("add_document", {"kb": "nope", "content": "x"}, ErrorCode.NOT_FOUND),
        ("search", {"kb": "kb1", "query": "x", "filter": {"owner": "x"}}, ErrorCode.INVALID_REQUEST),
        ("search", {"kb": "kb1", "query": "x", "top_k": 500}, ErrorCode.INVALID_REQUEST),
        ("add_document", {"kb": "kb1", "content": "y " * 30_000}, ErrorCode.LIMIT_EXCEEDED),
    ]
    for tool, args, code in cases:
        failed = await rag.fails(a, tool, args)
        assert failed.error is not None and failed.error.code == code, (tool, failed)
        assert "Traceback" not in str(failed)


async def test_a_second_replica_on_the_same_local_qdrant_path_stops_at_start_saying_why(rag: Rag) -> None:
    second = build_service(RagSettings())
    with pytest.raises(StartupError, match="in use by another process"):
        await second.started(rag.harness.settings, None)
