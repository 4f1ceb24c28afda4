"""Shared knowledge bases (grants with level, expiry, resharing, attribution, revocation),
system knowledge bases, and tenant export/delete."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.proto.errors import ErrorCode
from mcpmesh.rag.testing import RW, Rag, org
from mcpmesh.service.testing import audit_events

PLAN = "The launch plan: ship the rocket on Friday from pad 39."


async def seeded(rag: Rag) -> str:
    a = org()
    await rag.call(a, "create_kb", {"kb": "plans"})
    await rag.call(a, "add_document", {"kb": "plans", "content": PLAN, "doc_id": "launch"})
    return a


async def code_of(rag: Rag, org_id: str, tool: str, args: dict[str, object]) -> str:
    failed = await rag.fails(org_id, tool, args)
    assert failed.error is not None
    return str(failed.error.code)


async def test_a_read_grant_allows_search_and_get_only_with_attribution(rag: Rag) -> None:
    a, b = await seeded(rag), org()
    mine = {"kb": "plans", "owner_org": a}
    assert await code_of(rag, b, "search", {**mine, "query": "launch plan"}) == ErrorCode.NOT_FOUND
    share = await rag.call(a, "share_kb", {"kb": "plans", "grantee": b, "require_attribution": True})
    assert share["access"] == "read" and share["grantee"] == b
    found = await rag.call(b, "search", {**mine, "query": "launch plan rocket"})
    assert found["hits"][0]["owner_org"] == a and found["hits"][0]["doc_id"] == "launch"
    assert found["attribution"]["owner_org"] == a
    assert (await rag.call(b, "get_document", {**mine, "doc_id": "launch"}))["text"] == PLAN
    listed = (await rag.call(b, "shared_with_me"))["knowledge_bases"]
    assert [(k["kb"], k["owner_org"], k["access"]) for k in listed] == [("plans", a, "read")]
    for tool, args in [
        ("add_document", {**mine, "content": "B's edit"}),
        ("delete_document", {**mine, "doc_id": "launch"}),
        ("share_kb", {**mine, "grantee": org()}),
    ]:
        assert await code_of(rag, b, tool, args) == ErrorCode.FORBIDDEN, tool
    assert await code_of(rag, b, "delete_kb", {"kb": "plans"}) == ErrorCode.NOT_FOUND  # B's own: none
    # Without owner_org, B's names are B's own: A's kb is not found by guessing.
    assert await code_of(rag, b, "search", {"kb": "plans", "query": "launch"}) == ErrorCode.NOT_FOUND
    assert await code_of(rag, b, "search", {"kb": f"{a}__plans", "query": "x"}) == ErrorCode.INVALID_REQUEST


async def test_revoked_and_expired_grants_allow_nothing(rag: Rag) -> None:
    a, b, c = await seeded(rag), org(), org()
    mine = {"kb": "plans", "owner_org": a, "query": "launch plan"}
    await rag.call(a, "share_kb", {"kb": "plans", "grantee": b, "allow_resharing": True})
    await rag.call(b, "share_kb", {"kb": "plans", "grantee": c, "owner_org": a})
    assert (await rag.call(c, "search", mine))["hits"]
    await rag.call(a, "revoke_kb_share", {"kb": "plans", "grantee": b})
    for who in (b, c):  # the reshare went with the share it was made from
        assert await code_of(rag, who, "search", mine) == ErrorCode.NOT_FOUND
    await rag.call(a, "share_kb", {"kb": "plans", "grantee": b, "expires_in_s": 3600})
    assert (await rag.call(b, "search", mine))["hits"]
    shares = await rag.harness.service.store.for_tenant(a).collection("shares")
    past = datetime.now(UTC) - timedelta(seconds=1)
    await shares.update_many({"grantee": b}, {"$set": {"expires_at": past}})
    assert await code_of(rag, b, "search", mine) == ErrorCode.NOT_FOUND
    assert (await rag.call(b, "shared_with_me"))["knowledge_bases"] == []


async def test_a_write_grant_allows_documents_and_counts_against_the_owner(rag: Rag) -> None:
    a, b = await seeded(rag), org()
    await rag.call(a, "share_kb", {"kb": "plans", "grantee": b, "access": "write"})
    added = await rag.call(b, "add_document", {"kb": "plans", "owner_org": a, "content": "B's note on fuel."})
    assert added["owner_org"] == a
    kb = await rag.call(a, "get_kb", {"kb": "plans"})
    assert kb["documents"] == 2
    assert (await rag.call(b, "list_kbs"))["knowledge_bases"] == []  # nothing counted to B


async def test_document_changes_are_in_the_owners_audit_log(rag: Rag, nats_server: LocalNatsServer) -> None:
    a, b = await seeded(rag), org()
    await rag.call(a, "share_kb", {"kb": "plans", "grantee": b, "access": "write"})
    update = {"kb": "plans", "owner_org": a, "doc_id": "launch", "content": "Ship on Saturday."}
    assert (await rag.call(b, "update_document", update))["version"] == 2
    assert (await rag.call(b, "update_document", update))["unchanged"]  # the same again: no new version
    await rag.call(a, "delete_document", {"kb": "plans", "doc_id": "launch"})
    await rag.call(a, "delete_kb", {"kb": "plans"})
    events = await audit_events(nats_server, a, "rag", 3)
    assert [(e.action, e.target, e.outcome) for e in events] == [
        ("rag.document.update", "plans/launch", "ok"),
        ("rag.document.delete", "plans/launch", "ok"),
        ("rag.kb.delete", "plans", "ok"),
    ]
    assert events[0].detail == {"version": "2", "caller_org": b} and events[0].actor.startswith("key-")
    assert events[1].detail == {"version": "2"} and all(e.org_id == a for e in events)


async def test_system_kbs_are_readable_by_all_and_writable_with_admin(rag: Rag) -> None:
    admin, b = org(), org()
    assert await code_of(rag, admin, "create_kb", {"kb": "handbook", "system": True}) == ErrorCode.FORBIDDEN
    created = await rag.call(admin, "create_kb", {"kb": "handbook", "system": True}, scopes=[*RW, "admin"])
    assert created["access"] == "system" and created["owner_org"] == "org-system"
    await rag.call(
        admin,
        "add_document",
        {"kb": "handbook", "content": "Vacation requests go to HR."},
        scopes=[*RW, "admin"],
    )
    hits = (await rag.call(b, "search", {"kb": "handbook", "query": "vacation requests"}))["hits"]
    assert hits and hits[0]["owner_org"] == "org-system"
    assert await code_of(rag, b, "add_document", {"kb": "handbook", "content": "x"}) == ErrorCode.FORBIDDEN
    assert (
        await code_of(rag, b, "share_kb", {"kb": "handbook", "grantee": org()}) == ErrorCode.INVALID_REQUEST
    )
    listed = (await rag.call(b, "list_kbs"))["knowledge_bases"]
    assert [(k["kb"], k["access"]) for k in listed] == [("handbook", "system")]


async def test_tenant_export_has_the_kbs_and_delete_drops_the_collections(rag: Rag) -> None:
    a = await seeded(rag)
    exported = await rag.harness.tenant_command("export", a)
    assert exported.error is None and exported.export is not None
    assert [doc["_id"] for doc in exported.export["kbs"]] == ["plans"]
    points = exported.export["vectors:plans"]
    assert points and points[0]["payload"]["doc"] == "launch"
    dropped = await rag.harness.tenant_command("delete", a)
    assert dropped.error is None and "plans" in dropped.dropped
    assert await rag.harness.service.vectors.for_tenant(a).list_kbs() == []
    assert await code_of(rag, a, "get_kb", {"kb": "plans"}) == ErrorCode.NOT_FOUND
