"""Per-tenant knowledge bases in Qdrant: each is the collection `<org>__<kb>`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any

from qdrant_client import models

from mcpmesh.proto.ids import validate_org_id
from mcpmesh.vectors.connection import QdrantConnection
from mcpmesh.vectors.errors import InvalidVector, KnowledgeBaseMismatch, UnknownKnowledgeBase
from mcpmesh.vectors.hybrid import DENSE, SPARSE, HybridPoint, HybridQuery, plan
from mcpmesh.vectors.naming import kb_collection_name, kb_of
from mcpmesh.vectors.points import (
    DISTANCES,
    Distance,
    ExportedPoint,
    Hit,
    KbExport,
    KbInfo,
    PayloadFilter,
    Point,
    PointId,
    VectorsExport,
    build_filter,
    distance_name,
    plain_point_id,
    validate_point_id,
    validate_vector,
)

_EXPORT_PAGE = 256


class Vectors:
    """The platform's Qdrant: hands out per-tenant views and drops or exports whole tenants."""

    def __init__(self, client: QdrantConnection) -> None:
        self._client = client

    @property
    def client(self) -> QdrantConnection:
        return self._client

    def for_tenant(self, org_id: str) -> TenantVectors:
        return TenantVectors(self._client, org_id)

    async def drop_tenant(self, org_id: str) -> list[str]:
        """Drop every knowledge base of the org; returns their names."""
        tenant = self.for_tenant(org_id)
        dropped = []
        for kb in await tenant.list_kbs():
            if await tenant.drop_kb(kb):
                dropped.append(kb)
        return dropped

    async def export_tenant(self, org_id: str) -> AsyncIterator[ExportedPoint]:
        """Stream every point of the org with its vector and payload, kb by kb."""
        tenant = self.for_tenant(org_id)
        for kb in await tenant.list_kbs():
            async for point in tenant.scroll(kb):
                yield point

    async def export_tenant_json(self, org_id: str) -> VectorsExport:
        """The whole export in memory (use `export_tenant` to stream a large tenant)."""
        tenant = self.for_tenant(org_id)
        kbs: dict[str, KbExport] = {}
        for kb in await tenant.list_kbs():
            info = await tenant.kb_info(kb)
            points = [point.as_json() async for point in tenant.scroll(kb)]
            kbs[kb] = KbExport(size=info.size, distance=info.distance, points=points)
        return VectorsExport(org_id=org_id, knowledge_bases=kbs)


class TenantVectors:
    """One org's knowledge bases. Every name it takes is a kb name, never a collection name."""

    def __init__(self, client: QdrantConnection, org_id: str) -> None:
        validate_org_id(org_id)
        self._client = client
        self._org_id = org_id

    @property
    def org_id(self) -> str:
        return self._org_id

    def __repr__(self) -> str:
        return f"TenantVectors(org_id={self._org_id!r})"

    def _name(self, kb: str) -> str:
        name: str = kb_collection_name(self._org_id, kb)
        return name

    async def ensure_kb(self, kb: str, size: int, distance: Distance = "cosine") -> bool:
        """Create the knowledge base unless it exists; True when created.

        Raises KnowledgeBaseMismatch when it exists with another size or distance.
        """
        name = self._name(kb)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InvalidVector(f"vector size must be a positive integer, not {size!r}")
        if distance not in DISTANCES:
            raise InvalidVector(f"unknown distance {distance!r}: expected one of {', '.join(DISTANCES)}")
        if not await self._client.collection_exists(name):
            params = models.VectorParams(size=size, distance=DISTANCES[distance])
            try:
                await self._client.create_collection(name, vectors_config=params)
                return True
            except Exception:
                # Someone else may have created it meanwhile; that is fine if it matches.
                if not await self._client.collection_exists(name):
                    raise
        info = await self.kb_info(kb)
        if (info.size, info.distance) != (size, distance):
            raise KnowledgeBaseMismatch(kb, f"size {size}, {distance}", f"size {info.size}, {info.distance}")
        return False

    async def ensure_hybrid_kb(self, kb: str, size: int) -> bool:
        """Create a hybrid knowledge base (dense cosine `size` + sparse with IDF, see
        mcpmesh.vectors.hybrid) unless it exists; True when created."""
        name = self._name(kb)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InvalidVector(f"vector size must be a positive integer, not {size!r}")
        if not await self._client.collection_exists(name):
            try:
                await self._client.create_collection(
                    name,
                    vectors_config={DENSE: models.VectorParams(size=size, distance=models.Distance.COSINE)},
                    sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                )
                return True
            except Exception:
                if not await self._client.collection_exists(name):
                    raise
        info = await self._client.get_collection(name)
        params = info.config.params.vectors
        dense = params.get(DENSE) if isinstance(params, dict) else None
        if dense is None or dense.size != size:
            found = f"size {dense.size}" if dense is not None else "no hybrid vectors"
            raise KnowledgeBaseMismatch(kb, f"hybrid, size {size}", found)
        return False

    async def hybrid_search(
        self, kb: str, query: HybridQuery, filter: PayloadFilter | models.Filter | None = None
    ) -> list[Hit]:
        """The best `query.limit` points of a hybrid kb: dense and sparse candidates (each
        within its threshold) fused by RRF; the score is the fused one."""
        name = self._name(kb)
        if query.limit < 1 or query.candidates < query.limit:
            raise InvalidVector("limit must be at least 1 and at most the number of candidates")
        fetched, fusion = plan(query, build_filter(filter))
        if not fetched:
            return []  # lexical only, and the query has no terms
        try:
            response = await self._client.query_points(
                name,
                prefetch=fetched,
                query=fusion,
                limit=query.limit,
                with_payload=True,
            )
        except Exception:
            await self._raise_clear_error(kb, {len(query.dense)})
            raise
        return _hits(response)

    async def kb_info(self, kb: str) -> KbInfo:
        name = self._name(kb)
        try:
            info = await self._client.get_collection(name)
        except Exception:
            await self._raise_if_missing(kb)
            raise
        params = info.config.params.vectors
        if isinstance(params, dict) and DENSE in params:  # a hybrid kb: its dense vector
            params = params[DENSE]
        if not isinstance(params, models.VectorParams):
            raise KnowledgeBaseMismatch(kb, "one unnamed vector", "named vectors")
        count = await self._client.count(name, exact=True)
        return KbInfo(name=kb, size=params.size, distance=distance_name(params.distance), points=count.count)

    async def list_kbs(self) -> list[str]:
        """This org's knowledge bases, by name (without the org prefix), sorted."""
        response = await self._client.get_collections()
        found = (kb_of(c.name, self._org_id) for c in response.collections)
        return sorted(kb for kb in found if kb is not None)

    async def drop_kb(self, kb: str) -> bool:
        """Delete the knowledge base and its points; False when it did not exist."""
        name = self._name(kb)
        if not await self._client.collection_exists(name):
            return False
        await self._client.delete_collection(name)
        return True

    async def upsert(self, kb: str, points: Sequence[Point] | Sequence[HybridPoint]) -> None:
        """Insert or replace points (same id: replaced); `HybridPoint`s into a hybrid kb. Waits
        until they are searchable."""
        name = self._name(kb)
        structs = [point.to_qdrant() for point in points]
        if not structs:
            return
        try:
            await self._client.upsert(name, points=structs, wait=True)
        except Exception:
            sizes = {len(p.dense) if isinstance(p, HybridPoint) else len(p.vector) for p in points}
            await self._raise_clear_error(kb, sizes)
            raise

    async def search(
        self,
        kb: str,
        vector: Sequence[float],
        limit: int = 10,
        filter: PayloadFilter | models.Filter | None = None,
        *,
        score_threshold: float | None = None,
    ) -> list[Hit]:
        """The `limit` nearest points, best first; `filter` matches payload fields exactly."""
        name = self._name(kb)
        query = validate_vector(vector)
        if limit < 1:
            raise InvalidVector(f"limit must be at least 1, not {limit}")
        try:
            response = await self._client.query_points(
                name,
                query=query,
                limit=limit,
                query_filter=build_filter(filter),
                with_payload=True,
                score_threshold=score_threshold,
            )
        except Exception:
            await self._raise_clear_error(kb, {len(query)})
            raise
        return _hits(response)

    async def delete_points(self, kb: str, ids: Sequence[PointId]) -> None:
        name = self._name(kb)
        checked: list[models.ExtendedPointId] = [validate_point_id(point_id) for point_id in ids]
        if not checked:
            return
        try:
            await self._client.delete(name, points_selector=models.PointIdsList(points=checked), wait=True)
        except Exception:
            await self._raise_clear_error(kb, set())
            raise

    async def delete_where(self, kb: str, where: PayloadFilter) -> None:
        """Delete the points whose payload matches `where` (which must not be empty)."""
        name = self._name(kb)
        selector = build_filter(where)
        if not where or selector is None:
            raise InvalidVector("delete_where needs at least one payload condition")
        try:
            await self._client.delete(name, points_selector=models.FilterSelector(filter=selector), wait=True)
        except Exception:
            await self._raise_clear_error(kb, set())
            raise

    async def count(self, kb: str) -> int:
        name = self._name(kb)
        try:
            return (await self._client.count(name, exact=True)).count
        except Exception:
            await self._raise_clear_error(kb, set())
            raise

    async def scroll(self, kb: str, *, page_size: int = _EXPORT_PAGE) -> AsyncIterator[ExportedPoint]:
        """Every point of the knowledge base with its vector and payload, in id order."""
        name = self._name(kb)
        offset: PointId | None = None
        while True:
            try:
                records, next_offset = await self._client.scroll(
                    name, limit=page_size, offset=offset, with_payload=True, with_vectors=True
                )
            except Exception:
                await self._raise_clear_error(kb, set())
                raise
            for record in records:
                yield ExportedPoint(
                    kb=kb,
                    id=plain_point_id(record.id),
                    vector=_plain_vector(record.vector),
                    payload=dict(record.payload or {}),
                )
            if next_offset is None:
                return
            if not isinstance(next_offset, int | str):
                raise TypeError(f"unexpected scroll offset {next_offset!r}")
            offset = next_offset

    async def _raise_if_missing(self, kb: str) -> None:
        try:
            exists = await self._client.collection_exists(self._name(kb))
        except Exception:
            return  # the original error says more
        if not exists:
            raise UnknownKnowledgeBase(kb) from None

    async def _raise_clear_error(self, kb: str, sizes: Collection[int]) -> None:
        """After a failed call: raise UnknownKnowledgeBase or InvalidVector when that is why.

        Qdrant reports these differently in local mode (ValueError) and on a server (HTTP
        errors), so the cause is checked here, only on the failure path.
        """
        await self._raise_if_missing(kb)
        if not sizes:
            return
        try:
            info = await self._client.get_collection(self._name(kb))
        except Exception:
            return
        params = info.config.params.vectors
        if isinstance(params, dict):
            params = params.get(DENSE)
        if isinstance(params, models.VectorParams) and any(size != params.size for size in sizes):
            got = ", ".join(str(size) for size in sorted(sizes))
            raise InvalidVector(
                f"knowledge base {kb!r} holds vectors of size {params.size}, got size {got}"
            ) from None


def _hits(response: models.QueryResponse) -> list[Hit]:
    return [
        Hit(id=plain_point_id(p.id), score=p.score, payload=dict(p.payload or {})) for p in response.points
    ]


def _plain_vector(vector: object) -> list[float] | dict[str, Any]:
    """One unnamed dense vector as a list; named ones (a hybrid kb) as {name: list or
    {"indices", "values"}}."""
    if isinstance(vector, list) and all(isinstance(x, int | float) for x in vector):
        return [float(x) for x in vector]
    if isinstance(vector, dict):
        plain: dict[str, Any] = {}
        for key, value in vector.items():
            if isinstance(value, models.SparseVector):
                plain[key] = {"indices": list(value.indices), "values": list(value.values)}
            else:
                plain[key] = _plain_vector(value)
        return plain
    raise TypeError("expected dense or named vectors")
