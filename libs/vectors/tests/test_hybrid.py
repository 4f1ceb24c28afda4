"""Hybrid knowledge bases: dense + sparse (IDF) prefetches fused by RRF, in local mode."""

from __future__ import annotations

import pytest
from qdrant_client import AsyncQdrantClient

from mcpmesh.vectors import (
    HybridPoint,
    HybridQuery,
    InvalidVector,
    KnowledgeBaseMismatch,
    SparseTerms,
    Vectors,
)

NONE = SparseTerms(indices=[], values=[])


async def test_hybrid_search_fuses_dense_and_sparse_matches(qdrant: AsyncQdrantClient) -> None:
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


async def test_hybrid_refusals(qdrant: AsyncQdrantClient) -> None:
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
