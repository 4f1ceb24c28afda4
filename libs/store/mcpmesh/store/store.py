"""The Store: control-plane collections shared by all orgs, and per-tenant handles."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from mcpmesh.proto.ids import validate_org_id
from mcpmesh.store.connection import Collection, Database
from mcpmesh.store.errors import UndeclaredKind
from mcpmesh.store.export import ExportedDocument, TenantExport, to_json_document
from mcpmesh.store.indexes import Index, IndexEnsurer
from mcpmesh.store.naming import (
    CONTROL_COLLECTIONS,
    ControlName,
    kind_of,
    org_of,
    tenant_collection_name,
    validate_control_name,
    validate_kind,
)

#: Every control collection is looked up and purged by org.
_ORG_INDEX = Index(keys=[("org_id", 1)])


@dataclass(frozen=True)
class TenantDrop:
    """What `Store.drop_tenant` removed."""

    collections: list[str]  # kinds whose collections were dropped
    control_rows: dict[str, int] = field(default_factory=dict)  # control collection -> rows deleted


class Store:
    """MongoDB for the whole platform, built from a database handle and the kinds it may use.

    `kinds` maps each per-tenant collection kind to its indexes; `control_indexes` adds
    indexes to control collections (each always gets one on `org_id`).
    """

    def __init__(
        self,
        db: Database,
        kinds: Mapping[str, Sequence[Index]],
        *,
        control_indexes: Mapping[str, Sequence[Index]] | None = None,
    ) -> None:
        self._db = db
        self._kinds = MappingProxyType({validate_kind(kind): tuple(idx) for kind, idx in kinds.items()})
        extra = control_indexes or {}
        for name in extra:
            validate_control_name(name)
        self._control_indexes: Mapping[str, tuple[Index, ...]] = MappingProxyType(
            {name: (_ORG_INDEX, *extra.get(name, ())) for name in CONTROL_COLLECTIONS}
        )
        self._ensurer = IndexEnsurer()

    @property
    def db(self) -> Database:
        return self._db

    def close(self) -> None:
        """Close the client of this store's database (its connections to the server)."""
        self._db.client.close()

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._kinds)

    async def control(self, name: ControlName) -> Collection:
        """A control-plane collection (`tenants`, `api_keys`, `usage`, `audit`): rows carry `org_id`."""
        checked = validate_control_name(name)
        collection = self._db.get_collection(checked)
        await self._ensurer.ensure(collection, self._control_indexes[checked])
        return collection

    def for_tenant(self, org_id: str) -> TenantStore:
        return TenantStore(self, validate_org_id(org_id))

    async def _tenant_collection(self, org_id: str, kind: str) -> Collection:
        name = tenant_collection_name(org_id, kind)
        indexes = self._kinds.get(kind)
        if indexes is None:
            raise UndeclaredKind(kind, self.kinds)
        collection = self._db.get_collection(name)
        await self._ensurer.ensure(collection, indexes)
        return collection

    async def tenant_collections(self, org_id: str) -> dict[str, str]:
        """Kind -> collection name for every `<org>__*` collection that exists, declared or not."""
        validate_org_id(org_id)
        found = {}
        for name in await self._db.list_collection_names():
            kind = kind_of(name, org_id)
            if kind is not None:
                found[kind] = name
        return dict(sorted(found.items()))

    async def orgs_with(self, kind: str) -> list[str]:
        """Every org that has a collection of this declared kind, sorted (for work across orgs,
        e.g. the job sweeper; each org is then reached through `for_tenant`)."""
        if validate_kind(kind) not in self._kinds:
            raise UndeclaredKind(kind, self.kinds)
        names = await self._db.list_collection_names()
        return sorted({org for name in names if (org := org_of(name, kind)) is not None})

    async def drop_tenant(self, org_id: str, *, include_control: bool = False) -> TenantDrop:
        """Drop every collection of the org; delete its control-plane rows only if asked."""
        collections = await self.tenant_collections(org_id)
        for name in collections.values():
            await self._db.drop_collection(name)
        self._ensurer.forget(list(collections.values()))
        rows = await self.delete_control_rows(org_id) if include_control else {}
        return TenantDrop(collections=list(collections), control_rows=rows)

    async def delete_control_rows(self, org_id: str) -> dict[str, int]:
        """Delete the org's rows from every control collection; returns rows deleted per collection."""
        validate_org_id(org_id)
        deleted: dict[str, int] = {}
        for name in CONTROL_COLLECTIONS:
            result = await (await self.control(name)).delete_many({"org_id": org_id})
            deleted[name] = result.deleted_count
        return deleted

    async def export_tenant(
        self, org_id: str, *, include_control: bool = False, exclude: Iterable[str] = ()
    ) -> AsyncIterator[ExportedDocument]:
        """Stream every document of the org, collection by collection (sorted by kind, then `_id`),
        leaving out the kinds in `exclude` (e.g. sealed secrets: never part of an export)."""
        left_out = frozenset(exclude)
        for kind, name in (await self.tenant_collections(org_id)).items():
            if kind in left_out:
                continue
            async for document in self._db.get_collection(name).find({}).sort("_id", 1):
                yield ExportedDocument(kind=kind, document=to_json_document(document))
        if include_control:
            for control in CONTROL_COLLECTIONS:
                collection = await self.control(control)
                async for document in collection.find({"org_id": org_id}).sort("_id", 1):
                    yield ExportedDocument(kind=control, document=to_json_document(document), control=True)

    async def export_tenant_json(
        self, org_id: str, *, include_control: bool = False, exclude: Iterable[str] = ()
    ) -> TenantExport:
        """The whole export in memory (use `export_tenant` to stream a large tenant)."""
        collections: dict[str, list[dict[str, Any]]] = {}
        control: dict[str, list[dict[str, Any]]] = {}
        async for item in self.export_tenant(org_id, include_control=include_control, exclude=exclude):
            (control if item.control else collections).setdefault(item.kind, []).append(item.document)
        result = TenantExport(org_id=org_id, collections=collections)
        if include_control:
            result["control"] = control
        return result


class TenantStore:
    """One org's view of the store: every collection it hands out is `<org>__<kind>`."""

    def __init__(self, store: Store, org_id: str) -> None:
        self._store = store
        validate_org_id(org_id)
        self._org_id = org_id

    @property
    def org_id(self) -> str:
        return self._org_id

    async def collection(self, kind: str) -> Collection:
        """This org's collection of a declared kind; its indexes exist once this returns."""
        return await self._store._tenant_collection(self._org_id, kind)

    def __repr__(self) -> str:
        return f"TenantStore(org_id={self._org_id!r})"
