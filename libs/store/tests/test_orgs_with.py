"""`Store.orgs_with(kind)`: the orgs holding a collection of one kind, for work across orgs."""

from __future__ import annotations

import pytest

from mcpmesh.store import Database, Store, UndeclaredKind
from mcpmesh.store.naming import org_of


async def test_lists_exactly_the_orgs_with_that_kind(mongo_db: Database) -> None:
    store = Store(mongo_db, {"jobs": [], "job": [], "notes": []})
    for org in ("org-bbb", "org-aaa"):
        await (await store.for_tenant(org).collection("jobs")).insert_one({"n": 1})
    await (await store.for_tenant("org-ccc").collection("notes")).insert_one({"n": 1})
    await (await store.for_tenant("org-ddd").collection("job")).insert_one({"n": 1})
    await mongo_db.get_collection("api_keys").insert_one({"org_id": "org-eee"})
    assert await store.orgs_with("jobs") == ["org-aaa", "org-bbb"]
    assert await store.orgs_with("job") == ["org-ddd"]
    assert await store.orgs_with("notes") == ["org-ccc"]
    await store.drop_tenant("org-aaa")
    assert await store.orgs_with("jobs") == ["org-bbb"]


async def test_an_undeclared_kind_is_refused(mongo_db: Database) -> None:
    with pytest.raises(UndeclaredKind):
        await Store(mongo_db, {"notes": []}).orgs_with("jobs")


@pytest.mark.parametrize(
    ("name", "org"),
    [
        ("org-acme__jobs", "org-acme"),
        ("org-acme__jobs_old", None),
        ("org-acme__myjobs", None),
        ("ORG-ACME__jobs", None),
        ("x__jobs", None),
        ("jobs", None),
        ("org-acme__notes", None),
    ],
)
def test_org_of_reads_only_well_formed_names(name: str, org: str | None) -> None:
    assert org_of(name, "jobs") == org
