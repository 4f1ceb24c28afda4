from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from mcpmesh.proto.errors import ErrorCode
from mcpmesh.vectors import (
    Hit,
    InvalidIdentifier,
    InvalidVector,
    KnowledgeBaseMismatch,
    Point,
    QdrantConnection,
    UnknownKnowledgeBase,
    Vectors,
    point_id_for,
)


@pytest.fixture
def vectors(qdrant: QdrantConnection) -> Vectors:
    return Vectors(qdrant)


async def seed(vectors: Vectors) -> None:
    """Two orgs whose names share a prefix, each with a `docs` kb holding its own data."""
    for org, axis in (("org-abc", 0), ("org-abcd", 1)):
        tenant = vectors.for_tenant(org)
        await tenant.ensure_kb("docs", 3)
        unit = [0.0, 0.0, 0.0]
        unit[axis] = 1.0
        await tenant.upsert(
            "docs",
            [
                Point(id=1, vector=unit, payload={"owner": org, "lang": "en"}),
                Point(id=2, vector=[0.5, 0.5, 0.1], payload={"owner": org, "lang": "fr"}),
            ],
        )
    await vectors.for_tenant("org-abc").ensure_kb("notes", 2)


async def test_ensure_kb_is_idempotent(vectors: Vectors) -> None:
    tenant = vectors.for_tenant("org-abc")
    assert await tenant.ensure_kb("docs", 4) is True
    assert await tenant.ensure_kb("docs", 4) is False
    info = await tenant.kb_info("docs")
    assert (info.name, info.size, info.distance, info.points) == ("docs", 4, "cosine", 0)


async def test_concurrent_ensure_kb_creates_once(vectors: Vectors) -> None:
    tenant = vectors.for_tenant("org-abc")
    created = await asyncio.gather(*(tenant.ensure_kb("docs", 4, "dot") for _ in range(5)))
    assert sorted(created) == [False, False, False, False, True]


async def test_ensure_kb_tolerates_losing_a_creation_race(
    vectors: Vectors, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process creates the kb between our existence check and our create."""
    tenant = vectors.for_tenant("org-abc")
    await tenant.ensure_kb("docs", 4)
    real_exists = vectors.client.collection_exists
    answers = [False]

    async def stale_exists(name: str) -> bool:
        return answers.pop() if answers else await real_exists(name)

    monkeypatch.setattr(vectors.client, "collection_exists", stale_exists)
    assert await tenant.ensure_kb("docs", 4) is False
    assert answers == []
    answers.append(False)
    with pytest.raises(KnowledgeBaseMismatch):
        await tenant.ensure_kb("docs", 5)


async def test_ensure_kb_refuses_a_different_shape(vectors: Vectors) -> None:
    tenant = vectors.for_tenant("org-abc")
    await tenant.ensure_kb("docs", 4)
    with pytest.raises(KnowledgeBaseMismatch, match="exists with size 4, cosine, not the requested size 8"):
        await tenant.ensure_kb("docs", 8)
    with pytest.raises(KnowledgeBaseMismatch) as caught:
        await tenant.ensure_kb("docs", 4, "euclid")
    assert caught.value.error.code == ErrorCode.CONFLICT


@pytest.mark.parametrize(
    ("size", "distance"), [(0, "cosine"), (-3, "cosine"), (True, "cosine"), (4, "jaccard")]
)
async def test_ensure_kb_rejects_bad_parameters(vectors: Vectors, size: Any, distance: Any) -> None:
    with pytest.raises(InvalidVector):
        await vectors.for_tenant("org-abc").ensure_kb("docs", size, distance)
    assert await vectors.for_tenant("org-abc").list_kbs() == []


async def test_same_kb_name_in_two_orgs_holds_separate_data(vectors: Vectors) -> None:
    await seed(vectors)
    for org in ("org-abc", "org-abcd"):
        hits = await vectors.for_tenant(org).search("docs", [1.0, 0.0, 0.0], limit=10)
        assert {hit.payload["owner"] for hit in hits} == {org}
        assert len(hits) == 2
    best_a = (await vectors.for_tenant("org-abc").search("docs", [1.0, 0.0, 0.0], limit=1))[0]
    best_b = (await vectors.for_tenant("org-abcd").search("docs", [0.0, 1.0, 0.0], limit=1))[0]
    assert (best_a.id, best_a.payload["lang"]) == (1, "en")
    assert (best_b.id, best_b.payload["lang"]) == (1, "en")


@pytest.mark.parametrize("kb", ["org-abcd__docs", "../org-abcd__docs", "Docs", ""])
async def test_a_tenant_cannot_name_another_orgs_kb(vectors: Vectors, kb: str) -> None:
    await seed(vectors)
    with pytest.raises(InvalidIdentifier, match="invalid knowledge base name"):
        await vectors.for_tenant("org-abc").search(kb, [1.0, 0.0, 0.0])


@pytest.mark.parametrize("org", ["org-ab", "ORG-abc", "org-abc__docs", None])
def test_for_tenant_rejects_invalid_org_ids(vectors: Vectors, org: Any) -> None:
    with pytest.raises(InvalidIdentifier, match="invalid org id"):
        vectors.for_tenant(org)


async def test_search_returns_hits_best_first(vectors: Vectors) -> None:
    await seed(vectors)
    hits = await vectors.for_tenant("org-abc").search("docs", [0.6, 0.4, 0.1], limit=5)
    assert [hit.id for hit in hits] == [2, 1]
    assert hits[0].score > hits[1].score
    assert isinstance(hits[0], Hit)
    assert hits[0].payload == {"owner": "org-abc", "lang": "fr"}


async def test_search_filters_on_payload(vectors: Vectors) -> None:
    await seed(vectors)
    tenant = vectors.for_tenant("org-abc")
    only_fr = await tenant.search("docs", [1.0, 0.0, 0.0], limit=5, filter={"lang": "fr"})
    assert [hit.id for hit in only_fr] == [2]
    either = await tenant.search("docs", [1.0, 0.0, 0.0], limit=5, filter={"lang": ["fr", "de"]})
    assert [hit.id for hit in either] == [2]
    none = await tenant.search("docs", [1.0, 0.0, 0.0], limit=5, filter={"lang": "de"})
    assert none == []
    with pytest.raises(InvalidVector, match="filter on 'lang'"):
        await tenant.search("docs", [1.0, 0.0, 0.0], filter={"lang": ["fr", 3]})  # type: ignore[dict-item]


async def test_upsert_replaces_a_point_with_the_same_id(vectors: Vectors) -> None:
    await seed(vectors)
    tenant = vectors.for_tenant("org-abc")
    await tenant.upsert("docs", [Point(id=1, vector=[0.0, 0.0, 1.0], payload={"v": 2})])
    assert await tenant.count("docs") == 2
    best = (await tenant.search("docs", [0.0, 0.0, 1.0], limit=1))[0]
    assert (best.id, best.payload) == (1, {"v": 2})


async def test_uuid_point_ids_come_back_canonical(vectors: Vectors) -> None:
    tenant = vectors.for_tenant("org-abc")
    await tenant.ensure_kb("docs", 2)
    raw = "9F1C0B9E-8F3E-4C2A-9D1E-1A2B3C4D5E6F"
    derived = point_id_for("doc-7#chunk-3")
    await tenant.upsert("docs", [Point(id=raw, vector=[1.0, 0.0]), Point(id=derived, vector=[0.0, 1.0])])
    hits = await tenant.search("docs", [1.0, 0.1], limit=2)
    assert [hit.id for hit in hits] == [raw.lower(), derived]
    assert point_id_for("doc-7#chunk-3") == derived
    assert uuid.UUID(derived).version == 5


@pytest.mark.parametrize("bad", ["doc-1", -1, 1.5, True, None])
async def test_invalid_point_ids_are_rejected(vectors: Vectors, bad: Any) -> None:
    tenant = vectors.for_tenant("org-abc")
    await tenant.ensure_kb("docs", 2)
    with pytest.raises(InvalidVector, match="invalid point id"):
        await tenant.upsert("docs", [Point(id=bad, vector=[1.0, 0.0])])
    assert await tenant.count("docs") == 0


async def test_wrong_vector_size_is_a_clear_error(vectors: Vectors) -> None:
    await seed(vectors)
    tenant = vectors.for_tenant("org-abc")
    with pytest.raises(InvalidVector, match="holds vectors of size 3, got size 2"):
        await tenant.upsert("docs", [Point(id=9, vector=[1.0, 0.0])])
    with pytest.raises(InvalidVector, match="holds vectors of size 3, got size 4"):
        await tenant.search("docs", [1.0, 0.0, 0.0, 0.0])
    with pytest.raises(InvalidVector, match="finite"):
        await tenant.search("docs", [float("nan"), 0.0, 0.0])


async def test_a_missing_kb_is_not_found(vectors: Vectors) -> None:
    await seed(vectors)
    tenant = vectors.for_tenant("org-abc")
    with pytest.raises(UnknownKnowledgeBase, match="knowledge base 'handbook' does not exist") as caught:
        await tenant.search("handbook", [1.0, 0.0, 0.0])
    assert caught.value.error.code == ErrorCode.NOT_FOUND
    assert "org-" not in str(caught.value)
    for call in (
        tenant.upsert("handbook", [Point(id=1, vector=[1.0])]),
        tenant.delete_points("handbook", [1]),
        tenant.count("handbook"),
        tenant.kb_info("handbook"),
    ):
        with pytest.raises(UnknownKnowledgeBase):
            await call
    # Another org's kb of that name does not exist for this one either.
    await vectors.for_tenant("org-abcd").ensure_kb("private", 3)
    with pytest.raises(UnknownKnowledgeBase):
        await tenant.search("private", [1.0, 0.0, 0.0])


async def test_delete_points_and_delete_where(vectors: Vectors) -> None:
    await seed(vectors)
    tenant = vectors.for_tenant("org-abc")
    await tenant.delete_points("docs", [1])
    assert [hit.id for hit in await tenant.search("docs", [1.0, 0.0, 0.0])] == [2]
    await tenant.delete_where("docs", {"lang": "fr"})
    assert await tenant.count("docs") == 0
    assert await vectors.for_tenant("org-abcd").count("docs") == 2
    with pytest.raises(InvalidVector, match="at least one payload condition"):
        await tenant.delete_where("docs", {})


async def test_list_kbs_shows_only_own_kbs_without_prefix(vectors: Vectors) -> None:
    await seed(vectors)
    assert await vectors.for_tenant("org-abc").list_kbs() == ["docs", "notes"]
    assert await vectors.for_tenant("org-abcd").list_kbs() == ["docs"]
    assert await vectors.for_tenant("org-zzz").list_kbs() == []


async def test_drop_kb(vectors: Vectors) -> None:
    await seed(vectors)
    tenant = vectors.for_tenant("org-abc")
    assert await tenant.drop_kb("notes") is True
    assert await tenant.drop_kb("notes") is False
    assert await tenant.list_kbs() == ["docs"]


async def test_drop_tenant_drops_only_that_org(vectors: Vectors) -> None:
    await seed(vectors)
    assert await vectors.drop_tenant("org-abc") == ["docs", "notes"]
    assert await vectors.for_tenant("org-abc").list_kbs() == []
    assert await vectors.for_tenant("org-abcd").list_kbs() == ["docs"]
    assert await vectors.for_tenant("org-abcd").count("docs") == 2
    assert await vectors.drop_tenant("org-abc") == []


async def test_export_tenant_streams_only_that_orgs_points(vectors: Vectors) -> None:
    await seed(vectors)
    exported = [point async for point in vectors.export_tenant("org-abcd")]
    assert [(p.kb, p.id) for p in exported] == [("docs", 1), ("docs", 2)]
    assert {p.payload["owner"] for p in exported} == {"org-abcd"}
    assert exported[0].vector == pytest.approx([0.0, 1.0, 0.0])


async def test_export_tenant_json_is_serialisable(vectors: Vectors) -> None:
    await seed(vectors)
    dump = await vectors.export_tenant_json("org-abc")
    assert json.loads(json.dumps(dump)) == dump
    kbs = dump["knowledge_bases"]
    assert set(kbs) == {"docs", "notes"}
    assert kbs["docs"]["size"] == 3 and kbs["docs"]["distance"] == "cosine"
    assert [p["payload"]["owner"] for p in kbs["docs"]["points"]] == ["org-abc", "org-abc"]
    assert kbs["notes"]["points"] == []


async def test_scroll_pages_through_every_point(vectors: Vectors) -> None:
    tenant = vectors.for_tenant("org-abc")
    await tenant.ensure_kb("docs", 2)
    await tenant.upsert("docs", [Point(id=i, vector=[1.0, float(i)], payload={"i": i}) for i in range(7)])
    seen = [point.id async for point in tenant.scroll("docs", page_size=2)]
    assert seen == list(range(7))
