from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from bson import ObjectId, json_util
from pymongo import IndexModel
from pymongo.errors import DuplicateKeyError

from mcpmesh.store import Database, Index, InvalidIdentifier, Store, UndeclaredKind

KINDS = {
    "contexts": [
        Index(keys=[("namespace", 1), ("updated_at", -1)]),
        Index(keys=[("ctx_id", 1)], unique=True),
    ],
    "notes": [],
}


@pytest.fixture
def store(mongo_db: Database) -> Store:
    return Store(mongo_db, KINDS, control_indexes={"api_keys": [Index(keys=[("key_id", 1)], unique=True)]})


@pytest.fixture
def index_models_built(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Index]]:
    """Records every Index turned into a model, i.e. every index creation request."""
    built: list[Index] = []
    original = Index.model

    def spy(self: Index) -> IndexModel:
        built.append(self)
        return original(self)

    monkeypatch.setattr(Index, "model", spy)
    yield built


async def names(store: Store) -> set[str]:
    return set(await store.db.list_collection_names())


async def test_each_org_gets_its_own_collection(store: Store) -> None:
    a = await store.for_tenant("org-aaa").collection("contexts")
    b = await store.for_tenant("org-bbb").collection("contexts")
    assert a.name == "org-aaa__contexts"
    assert b.name == "org-bbb__contexts"
    await a.insert_one({"ctx_id": "c1", "namespace": "n", "secret": "A"})
    await b.insert_one({"ctx_id": "c1", "namespace": "n", "secret": "B"})
    assert [d["secret"] async for d in a.find({})] == ["A"]
    assert [d["secret"] async for d in b.find({})] == ["B"]


@pytest.mark.parametrize("kind", ["org-bbb__contexts", "../org-bbb__contexts", "Contexts", "", "a.b"])
async def test_a_tenant_handle_cannot_name_another_orgs_collection(store: Store, kind: str) -> None:
    await (await store.for_tenant("org-bbb").collection("contexts")).insert_one({"ctx_id": "b"})
    with pytest.raises(InvalidIdentifier, match="invalid collection kind"):
        await store.for_tenant("org-aaa").collection(kind)


@pytest.mark.parametrize("org", ["org-AAA", "aaa", "org-a__b", "org-aa", None])
def test_for_tenant_rejects_invalid_org_ids(store: Store, org: Any) -> None:
    with pytest.raises(InvalidIdentifier, match="invalid org id"):
        store.for_tenant(org)


async def test_undeclared_kind_is_an_error_naming_the_declared_ones(store: Store) -> None:
    with pytest.raises(UndeclaredKind, match=r"'debates' is not declared .*declared: contexts, notes"):
        await store.for_tenant("org-aaa").collection("debates")
    assert "org-aaa__debates" not in await names(store)


def test_store_rejects_invalid_declarations(mongo_db: Database) -> None:
    with pytest.raises(InvalidIdentifier, match="invalid collection kind 'Bad-Kind'"):
        Store(mongo_db, {"Bad-Kind": []})
    with pytest.raises(ValueError, match="unknown control collection 'contexts'"):
        Store(mongo_db, KINDS, control_indexes={"contexts": []})


async def test_declared_indexes_exist_after_first_use(store: Store) -> None:
    collection = await store.for_tenant("org-aaa").collection("contexts")
    info = await collection.index_information()
    keys = {name: list(dict(spec["key"]).items()) for name, spec in info.items()}
    assert [("namespace", 1), ("updated_at", -1)] in keys.values()
    unique = [spec for spec in info.values() if list(dict(spec["key"]).items()) == [("ctx_id", 1)]]
    assert unique and unique[0].get("unique") is True


async def test_indexes_are_created_once_per_tenant_per_process(
    store: Store, index_models_built: list[Index]
) -> None:
    tenant = store.for_tenant("org-aaa")
    await asyncio.gather(*(tenant.collection("contexts") for _ in range(10)))
    await store.for_tenant("org-aaa").collection("contexts")  # a new handle shares the cache
    assert len(index_models_built) == 2
    await store.for_tenant("org-bbb").collection("contexts")
    assert len(index_models_built) == 4


async def test_unique_index_is_enforced(store: Store) -> None:
    contexts = await store.for_tenant("org-aaa").collection("contexts")
    await contexts.insert_one({"ctx_id": "c1"})
    with pytest.raises(DuplicateKeyError):
        await contexts.insert_one({"ctx_id": "c1"})
    other = await store.for_tenant("org-bbb").collection("contexts")
    await other.insert_one({"ctx_id": "c1"})  # uniqueness is per tenant
    assert await other.count_documents({}) == 1


async def test_control_collections_only_accept_the_four_names(store: Store) -> None:
    keys = await store.control("api_keys")
    assert keys.name == "api_keys"
    info = await keys.index_information()
    specs = [list(dict(spec["key"]).items()) for spec in info.values()]
    assert [("org_id", 1)] in specs and [("key_id", 1)] in specs
    await keys.insert_one({"org_id": "org-aaa", "key_id": "key-1"})
    with pytest.raises(DuplicateKeyError):
        await keys.insert_one({"org_id": "org-bbb", "key_id": "key-1"})
    with pytest.raises(ValueError, match="unknown control collection 'org-aaa__contexts'"):
        await store.control("org-aaa__contexts")  # type: ignore[arg-type]


async def seed(store: Store) -> None:
    for org in ("org-abc", "org-abcd"):
        tenant = store.for_tenant(org)
        await (await tenant.collection("contexts")).insert_one({"ctx_id": "c", "org": org})
        await (await tenant.collection("notes")).insert_one({"text": f"note of {org}"})
        for control in ("tenants", "usage", "audit"):
            await (await store.control(control)).insert_one({"org_id": org})
    # A collection of the org from an older release: not declared any more, still the org's.
    await store.db.get_collection("org-abc__legacy").insert_one({"old": True})


async def test_drop_tenant_drops_only_that_orgs_collections(store: Store) -> None:
    await seed(store)
    dropped = await store.drop_tenant("org-abc")
    assert dropped.collections == ["contexts", "legacy", "notes"]
    assert dropped.control_rows == {}
    remaining = await names(store)
    assert not {n for n in remaining if n.startswith("org-abc__")}
    assert {"org-abcd__contexts", "org-abcd__notes"} <= remaining
    assert await (await store.control("usage")).count_documents({"org_id": "org-abc"}) == 1


async def test_drop_tenant_deletes_control_rows_only_when_asked(store: Store) -> None:
    await seed(store)
    dropped = await store.drop_tenant("org-abc", include_control=True)
    assert dropped.control_rows == {"tenants": 1, "api_keys": 0, "usage": 1, "audit": 1}
    for control in ("tenants", "usage", "audit"):
        collection = await store.control(control)
        assert await collection.count_documents({"org_id": "org-abc"}) == 0
        assert await collection.count_documents({"org_id": "org-abcd"}) == 1


async def test_a_dropped_tenant_gets_its_indexes_again_on_reuse(
    store: Store, index_models_built: list[Index]
) -> None:
    contexts = await store.for_tenant("org-aaa").collection("contexts")
    await contexts.insert_one({"ctx_id": "c1"})
    await store.drop_tenant("org-aaa")
    contexts = await store.for_tenant("org-aaa").collection("contexts")
    assert len(index_models_built) == 4
    await contexts.insert_one({"ctx_id": "c1"})
    with pytest.raises(DuplicateKeyError):
        await contexts.insert_one({"ctx_id": "c1"})


async def test_export_returns_only_that_orgs_documents(store: Store) -> None:
    await seed(store)
    exported = [item async for item in store.export_tenant("org-abc")]
    assert [(item.kind, item.control) for item in exported] == [
        ("contexts", False),
        ("legacy", False),
        ("notes", False),
    ]
    assert exported[0].document["org"] == "org-abc"
    assert exported[2].document["text"] == "note of org-abc"


async def test_export_leaves_out_excluded_kinds(store: Store) -> None:
    await seed(store)
    exported = await store.export_tenant_json("org-abc", exclude=("notes", "legacy"))
    assert set(exported["collections"]) == {"contexts"}
    assert [item.kind async for item in store.export_tenant("org-abc", exclude=["contexts"])] == [
        "legacy",
        "notes",
    ]


async def test_export_can_include_control_rows(store: Store) -> None:
    await seed(store)
    assert "control" not in await store.export_tenant_json("org-abcd")
    result = await store.export_tenant_json("org-abcd", include_control=True)
    assert result["org_id"] == "org-abcd"
    assert set(result["collections"]) == {"contexts", "notes"}
    control = result["control"]
    assert set(control) == {"tenants", "usage", "audit"}
    assert all(row["org_id"] == "org-abcd" for rows in control.values() for row in rows)


async def test_export_is_json_serialisable_and_round_trips(store: Store) -> None:
    notes = await store.for_tenant("org-aaa").collection("notes")
    original = {
        "_id": ObjectId(),
        "at": datetime(2026, 5, 1, 12, 30, tzinfo=UTC),
        "blob": b"\x00\x01binary",
        "n": 3,
        "tags": ["a", "b"],
    }
    await notes.insert_one(dict(original))
    exported = await store.export_tenant_json("org-aaa")
    document = exported["collections"]["notes"][0]
    assert document["_id"] == {"$oid": str(original["_id"])}
    assert document["at"] == {"$date": "2026-05-01T12:30:00Z"}
    assert "$binary" in document["blob"]
    assert document["n"] == 3
    text = json.dumps(exported)
    options = json_util.RELAXED_JSON_OPTIONS.with_options(tz_aware=True, tzinfo=UTC)
    restored = json_util.loads(json.dumps(document), json_options=options)
    assert restored == original
    assert "org-aaa" in text


async def test_invalid_org_is_rejected_by_drop_and_export(store: Store) -> None:
    with pytest.raises(InvalidIdentifier):
        await store.drop_tenant("org-abc__")
    with pytest.raises(InvalidIdentifier):
        [item async for item in store.export_tenant("ORG-AB")]
