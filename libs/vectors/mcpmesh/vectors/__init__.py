"""Qdrant for mcpmesh: the only code that touches it; knowledge bases scoped to one tenant."""

from mcpmesh.proto.ids import InvalidIdentifier
from mcpmesh.vectors.connection import QdrantConnection, QdrantPathInUse, QdrantSettings, connect_qdrant
from mcpmesh.vectors.errors import InvalidVector, KnowledgeBaseMismatch, UnknownKnowledgeBase
from mcpmesh.vectors.hybrid import HybridPoint, HybridQuery, SparseTerms
from mcpmesh.vectors.naming import validate_kb_name
from mcpmesh.vectors.points import (
    Distance,
    ExportedPoint,
    Hit,
    KbExport,
    KbInfo,
    PayloadFilter,
    Point,
    PointId,
    VectorsExport,
    point_id_for,
)
from mcpmesh.vectors.vectors import TenantVectors, Vectors

__all__ = [
    "Distance",
    "ExportedPoint",
    "Hit",
    "HybridPoint",
    "HybridQuery",
    "InvalidIdentifier",
    "InvalidVector",
    "KbExport",
    "KbInfo",
    "KnowledgeBaseMismatch",
    "PayloadFilter",
    "Point",
    "PointId",
    "QdrantConnection",
    "QdrantPathInUse",
    "QdrantSettings",
    "SparseTerms",
    "TenantVectors",
    "UnknownKnowledgeBase",
    "Vectors",
    "VectorsExport",
    "connect_qdrant",
    "point_id_for",
    "validate_kb_name",
]
