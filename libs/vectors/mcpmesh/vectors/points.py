"""The plain types callers hand in and get back, so no caller needs qdrant-client types."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, TypedDict

from qdrant_client import models

from mcpmesh.vectors.errors import InvalidVector

PointId: TypeAlias = int | str
Distance: TypeAlias = Literal["cosine", "dot", "euclid", "manhattan"]
#: Payload filter: each key must equal the value, or be one of the values for a list.
PayloadFilter: TypeAlias = Mapping[str, str | int | bool | Sequence[str] | Sequence[int]]

DISTANCES: dict[Distance, models.Distance] = {
    "cosine": models.Distance.COSINE,
    "dot": models.Distance.DOT,
    "euclid": models.Distance.EUCLID,
    "manhattan": models.Distance.MANHATTAN,
}
_POINT_ID_NAMESPACE = uuid.UUID("5b0f7c52-55e1-4c0b-9d0e-6d63706d6573")


def point_id_for(key: str) -> str:
    """A stable Qdrant point id (UUID) for any string key, e.g. `"doc-7#chunk-3"`."""
    return str(uuid.uuid5(_POINT_ID_NAMESPACE, key))


def validate_point_id(value: object) -> PointId:
    """Qdrant accepts unsigned integers and UUIDs; UUIDs are returned in canonical form."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    shown = value if isinstance(value, str | int) and len(str(value)) <= 60 else "<value>"
    raise InvalidVector(
        f"invalid point id {shown!r}: expected an unsigned integer or a UUID (see point_id_for)"
    )


def validate_vector(vector: Sequence[float]) -> list[float]:
    values = [float(x) for x in vector]
    if not values:
        raise InvalidVector("a vector needs at least one dimension")
    if not all(math.isfinite(x) for x in values):
        raise InvalidVector("a vector may only hold finite numbers")
    return values


@dataclass(frozen=True)
class Point:
    id: PointId
    vector: Sequence[float]
    payload: Mapping[str, Any] = field(default_factory=dict)

    def to_qdrant(self) -> models.PointStruct:
        return models.PointStruct(
            id=validate_point_id(self.id), vector=validate_vector(self.vector), payload=dict(self.payload)
        )


@dataclass(frozen=True)
class Hit:
    id: PointId
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class KbInfo:
    name: str
    size: int
    distance: Distance
    points: int


@dataclass(frozen=True)
class ExportedPoint:
    kb: str
    id: PointId
    vector: list[float] | dict[str, Any]  # named vectors (a hybrid kb): {name: list or sparse}
    payload: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "vector": self.vector, "payload": self.payload}


class KbExport(TypedDict):
    size: int
    distance: Distance
    points: list[dict[str, Any]]


class VectorsExport(TypedDict):
    """`Vectors.export_tenant_json`: every kb of the org with its shape and points."""

    org_id: str
    knowledge_bases: dict[str, KbExport]


def build_filter(where: PayloadFilter | models.Filter | None) -> models.Filter | None:
    if where is None or isinstance(where, models.Filter):
        return where
    conditions: list[models.Condition] = []
    for key, value in where.items():
        conditions.append(models.FieldCondition(key=key, match=_match(key, value)))
    return models.Filter(must=conditions)


def _match(key: str, value: object) -> models.MatchValue | models.MatchAny:
    if isinstance(value, str | int | bool):
        return models.MatchValue(value=value)
    items = list(value) if isinstance(value, Sequence) else None
    if items is not None and all(isinstance(item, str) for item in items):
        return models.MatchAny(any=[str(item) for item in items])
    if items is not None and all(isinstance(item, int) and not isinstance(item, bool) for item in items):
        return models.MatchAny(any=[int(item) for item in items])
    raise InvalidVector(
        f"filter on {key!r}: expected a string, integer, boolean, or a list of all strings or all integers"
    )


def plain_point_id(value: int | str | uuid.UUID) -> PointId:
    return str(value) if isinstance(value, uuid.UUID) else value


def distance_name(distance: models.Distance) -> Distance:
    for name, value in DISTANCES.items():
        if value == distance:
            return name
    raise ValueError(f"unsupported Qdrant distance {distance!r}")
