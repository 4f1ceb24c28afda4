"""Hybrid knowledge bases: a named dense vector plus a sparse (lexical) vector per point.

A hybrid kb is created with `TenantVectors.ensure_hybrid_kb`: dense vectors under the name
`dense` (cosine), sparse term weights under `sparse` with Qdrant's IDF modifier (so a
BM25-style score needs only term frequencies at write time: the IDF comes from the
collection at query time). `hybrid_search` runs both as Query API prefetches and fuses
their rankings with (weighted) Reciprocal Rank Fusion.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from qdrant_client import models

from mcpmesh.vectors.errors import InvalidVector
from mcpmesh.vectors.points import PointId, validate_point_id, validate_vector

DENSE = "dense"
SPARSE = "sparse"


@dataclass(frozen=True)
class SparseTerms:
    """A sparse vector: term ids (unsigned 32-bit) and their weights."""

    indices: Sequence[int]
    values: Sequence[float]

    def to_qdrant(self) -> models.SparseVector:
        if len(self.indices) != len(self.values):
            raise InvalidVector("a sparse vector needs as many values as indices")
        if any(not 0 <= i < 2**32 for i in self.indices) or len(set(self.indices)) != len(self.indices):
            raise InvalidVector("sparse vector indices must be distinct unsigned 32-bit integers")
        if not all(math.isfinite(v) for v in self.values):
            raise InvalidVector("a sparse vector may only hold finite numbers")
        return models.SparseVector(indices=list(self.indices), values=[float(v) for v in self.values])


@dataclass(frozen=True)
class HybridPoint:
    id: PointId
    dense: Sequence[float]
    sparse: SparseTerms
    payload: Mapping[str, Any] = field(default_factory=dict)

    def to_qdrant(self) -> models.PointStruct:
        vector: dict[str, Any] = {DENSE: validate_vector(self.dense)}
        if self.sparse.indices:  # a point with no terms has no sparse vector
            vector[SPARSE] = self.sparse.to_qdrant()
        return models.PointStruct(id=validate_point_id(self.id), vector=vector, payload=dict(self.payload))


@dataclass(frozen=True)
class HybridQuery:
    """What `hybrid_search` looks for: the dense and sparse query vectors and how each counts.

    A point is a candidate when its dense similarity is at least `dense_threshold` or its
    lexical score at least `sparse_threshold` (None: no bound); candidates are ranked by
    RRF with `weights` = (dense, sparse)."""

    dense: Sequence[float]
    sparse: SparseTerms
    limit: int = 10
    candidates: int = 50
    dense_threshold: float | None = None
    sparse_threshold: float | None = None
    weights: tuple[float, float] = (1.0, 1.0)
    rrf_k: int = 60


def plan(query: HybridQuery, where: models.Filter | None) -> tuple[list[models.Prefetch], models.RrfQuery]:
    """The prefetches (a retriever whose weight is 0 is left out, and the sparse one when the
    query has no terms) and the weighted RRF fusing them."""
    dense = validate_vector(query.dense)
    if any(w < 0 or not math.isfinite(w) for w in query.weights) or sum(query.weights) <= 0:
        raise InvalidVector("hybrid weights must be finite, non-negative and not both zero")
    fetched: list[models.Prefetch] = []
    weights: list[float] = []
    dense_weight, sparse_weight = query.weights
    if dense_weight > 0:
        fetched.append(
            models.Prefetch(
                query=dense,
                using=DENSE,
                limit=query.candidates,
                filter=where,
                score_threshold=query.dense_threshold,
            )
        )
        weights.append(dense_weight)
    if sparse_weight > 0 and query.sparse.indices:
        fetched.append(
            models.Prefetch(
                query=query.sparse.to_qdrant(),
                using=SPARSE,
                limit=query.candidates,
                filter=where,
                score_threshold=query.sparse_threshold,
            )
        )
        weights.append(sparse_weight)
    return fetched, models.RrfQuery(rrf=models.Rrf(k=query.rrf_k, weights=weights))
