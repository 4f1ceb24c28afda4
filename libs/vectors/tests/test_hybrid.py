"""Hybrid knowledge bases: dense + sparse (IDF) prefetches fused by RRF, in local mode."""

from __future__ import annotations

import asyncio

import pytest

from mcpmesh.vectors import (
    HybridPoint,
    HybridQuery,
    InvalidVector,
    KnowledgeBaseMismatch,
    QdrantConnection,
    SparseTerms,
    Vectors,
)

NONE = SparseTerms(indices=[], values=[])


async def test_hybrid_search_fuses_dense_and_sparse_matches(qdrant: QdrantConnection) -> None:
    kb = Vectors(qdrant).for_tenant("org-abc")
    assert await kb.ensure_hybrid_kb("docs", 3) is True
    assert await kb.ensure_hybrid_kb("docs", 3) is False
    await kb.upsert(
        "docs",
        [
            HybridPoint(1, [1.0, 0.0, 0.0], SparseTerms([7], [1.0]), {"name": "dense-match"}),
            HybridPoint(2, [0.0, 1.0, 0.0], SparseTerms([42], [1.0]), {"name": "lexical-match"}),
            HybridPoint(3, [0.0, 0.0, 1.0], NONE, {"name": "neither"}),
        ],
    )
    query = HybridQuery(dense=[1.0, 0.0, 0.0], sparse=SparseTerms([42], [1.0]), dense_threshold=0.5)
    hits = await kb.hybrid_search("docs", query)
    assert {hit.payload["name"] for hit in hits} == {"dense-match", "lexical-match"}
    lexical_first = HybridQuery(
        dense=[1.0, 0.0, 0.0], sparse=SparseTerms([42], [1.0]), dense_threshold=0.5, weights=(1.0, 3.0)
    )
    assert (await kb.hybrid_search("docs", lexical_first))[0].payload["name"] == "lexical-match"
    dense_only = HybridQuery(dense=[1.0, 0.0, 0.0], sparse=SparseTerms([42], [1.0]), weights=(1.0, 0.0))
    assert (await kb.hybrid_search("docs", dense_only))[0].payload["name"] == "dense-match"
    lexical_only = HybridQuery(dense=[1.0, 0.0, 0.0], sparse=SparseTerms([42], [1.0]), weights=(0.0, 1.0))
    assert [hit.payload["name"] for hit in await kb.hybrid_search("docs", lexical_only)] == ["lexical-match"]
    no_terms = HybridQuery(dense=[1.0, 0.0, 0.0], sparse=NONE, weights=(0.0, 1.0))
    assert await kb.hybrid_search("docs", no_terms) == []
    filtered = await kb.hybrid_search("docs", query, filter={"name": "dense-match"})
    assert [hit.id for hit in filtered] == [1]
    info = await kb.kb_info("docs")
    assert (info.size, info.points) == (3, 3)
    exported = [point async for point in kb.scroll("docs")]
    assert exported[1].vector["sparse"] == {"indices": [42], "values": [1.0]}  # type: ignore[index]


async def test_hybrid_refusals(qdrant: QdrantConnection) -> None:
    kb = Vectors(qdrant).for_tenant("org-abc")
    await kb.ensure_kb("plain", 3)
    with pytest.raises(KnowledgeBaseMismatch):
        await kb.ensure_hybrid_kb("plain", 3)
    await kb.ensure_hybrid_kb("docs", 3)
    with pytest.raises(KnowledgeBaseMismatch):
        await kb.ensure_hybrid_kb("docs", 4)
    with pytest.raises(InvalidVector):
        await kb.upsert("docs", [HybridPoint(1, [1.0, 0.0, 0.0], SparseTerms([1, 1], [1.0, 2.0]))])
    with pytest.raises(InvalidVector):
        await kb.hybrid_search("docs", HybridQuery(dense=[1.0, 0.0], sparse=NONE))
    with pytest.raises(InvalidVector):
        await kb.hybrid_search("docs", HybridQuery(dense=[1.0, 0.0, 0.0], sparse=NONE, weights=(0.0, 0.0)))


async def test_first_use_of_a_hybrid_kb_is_idempotent_under_races(
    qdrant: QdrantConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent first writers all get the kb, one creates it; a writer whose existence check is
    stale (another process created it in between) takes the existing one instead of failing."""
    kb = Vectors(qdrant).for_tenant("org-abc")
    created = await asyncio.gather(*(kb.ensure_hybrid_kb("docs", 3) for _ in range(5)))
    assert sorted(created) == [False, False, False, False, True]
    real_exists = qdrant.collection_exists
    answers = [False]

    async def stale_exists(name: str) -> bool:
        return answers.pop() if answers else await real_exists(name)

    monkeypatch.setattr(qdrant, "collection_exists", stale_exists)
    assert await kb.ensure_hybrid_kb("docs", 3) is False
    assert answers == []
    answers.append(False)
    with pytest.raises(KnowledgeBaseMismatch):  # the one that exists has another size: said so
        await kb.ensure_hybrid_kb("docs", 4)
