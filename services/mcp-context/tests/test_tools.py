"""Every tool (and the resource): most end to end through the bus on a real nats-server, some
in process (`local_mesh`, a LocalHarness: the same kit checks without NATS)."""

from __future__ import annotations

import asyncio
import json

from mcpmesh.context.testing import Mesh
from mcpmesh.proto.errors import ErrorCode, MeshException

A = "org-acme"
B = "org-globex"


def convo(n: int, start: int = 0) -> list[dict[str, str]]:
    roles = ["user", "assistant"]
    return [{"role": roles[i % 2], "content": f"message number {i}"} for i in range(start, start + n)]


async def test_tools_are_listed_with_their_scopes(mesh: Mesh) -> None:
    listed = await mesh.harness.request(A, "tools/list", scopes=["context:read"])
    names = {tool["name"] for tool in listed["tools"]}
    assert names == {
        "create",
        "append",
        "get",
        "list",
        "search",
        "update",
        "delete",
        "share",
        "revoke_share",
        "shared_with_me",
        "list_shares",
    }
    assert mesh.harness.service.tool_scopes["append"] == "context:write"
    assert mesh.harness.service.tool_scopes["get"] == "context:read"


async def test_every_tool_declares_what_it_does_to_the_world(mesh: Mesh) -> None:
    listed = await mesh.harness.request(A, "tools/list", scopes=["context:read"])
    hints = {t["name"]: t["annotations"] for t in listed["tools"]}
    # (readOnly, idempotent, destructive): what a client (and the gateway's timeout advice) relies on
    expected = {
        "get": (True, True, False),
        "list": (True, True, False),
        "search": (True, True, False),
        "shared_with_me": (True, True, False),
        "list_shares": (True, True, False),
        "create": (False, False, False),  # a new context each time
        "append": (False, False, False),  # the same entries again are appended again
        "update": (False, True, True),  # sets fields: the same call again changes nothing more
        "delete": (False, True, True),
        "share": (False, True, True),  # one share per grantee and target, overwritten
        "revoke_share": (False, True, True),
    }
    assert set(hints) == set(expected)
    for name, (read_only, idempotent, destructive) in expected.items():
        assert hints[name] == {
            "readOnlyHint": read_only,
            "idempotentHint": idempotent,
            "destructiveHint": destructive,
            "openWorldHint": False,  # only this service's own store
        }, name


async def test_create_returns_the_new_context(local_mesh: Mesh) -> None:
    created = await local_mesh.call(
        A,
        "create",
        {
            "title": "  Support chat ",
            "namespace": "team/support",
            "tags": ["vip", "en"],
            "metadata": {"customer": 42},
        },
        scopes=["context:write"],
    )
    assert created["ctx_id"].startswith("ctx-") and len(created["ctx_id"]) == 28
    assert created["title"] == "Support chat"
    assert created["namespace"] == "team/support"
    assert created["tags"] == ["vip", "en"]
    assert created["metadata"] == {"customer": 42}
    assert (created["entry_count"], created["token_total"], created["access"]) == (0, 0, "owner")


async def test_create_with_initial_entries(local_mesh: Mesh) -> None:
    created = await local_mesh.call(A, "create", {"title": "seeded", "entries": convo(3)})
    assert created["entry_count"] == 3
    got = await local_mesh.call(A, "get", {"ctx_id": created["ctx_id"]})
    assert [e["content"] for e in got["entries"]] == [f"message number {i}" for i in range(3)]


async def test_append_one_then_many_and_get_whole(local_mesh: Mesh) -> None:
    ctx_id = await local_mesh.create(A)
    one = await local_mesh.call(
        A,
        "append",
        {"ctx_id": ctx_id, "role": "system", "content": "You are terse."},
        scopes=["context:write"],
    )
    assert (one["appended"], one["first_seq"], one["last_seq"]) == (1, 0, 0)
    assert one["tokens"] == 4  # "You are terse." in cl100k_base
    many = await local_mesh.call(
        A,
        "append",
        {
            "ctx_id": ctx_id,
            "entries": [
                {"role": "user", "content": "2+2?"},
                {"role": "tool", "content": "4", "name": "calculator"},
                {"role": "assistant", "content": "4."},
            ],
        },
    )
    assert (many["appended"], many["first_seq"], many["last_seq"]) == (3, 1, 3)
    assert many["entry_count"] == 4
    got = await local_mesh.call(A, "get", {"ctx_id": ctx_id}, scopes=["context:read"])
    assert [e["seq"] for e in got["entries"]] == [0, 1, 2, 3]
    assert [e["role"] for e in got["entries"]] == ["system", "user", "tool", "assistant"]
    assert got["entries"][2]["name"] == "calculator"
    assert "name" not in got["entries"][0]
    assert got["token_total"] == sum(e["tokens"] for e in got["entries"]) == one["tokens"] + many["tokens"]
    assert got["entry_count"] == 4
    assert all(e["created_at"].endswith("Z") for e in got["entries"])
    assert got["window"] == {"returned": 4, "tokens": got["token_total"], "truncated": False}


async def test_get_window_of_last_n_entries_oldest_first(mesh: Mesh) -> None:
    ctx_id = await mesh.create(A)
    await mesh.call(A, "append", {"ctx_id": ctx_id, "entries": convo(10)})
    got = await mesh.call(A, "get", {"ctx_id": ctx_id, "last_n": 3})
    assert [e["seq"] for e in got["entries"]] == [7, 8, 9]
    assert got["entry_count"] == 10
    bigger = await mesh.call(A, "get", {"ctx_id": ctx_id, "last_n": 50})
    assert [e["seq"] for e in bigger["entries"]] == list(range(10))


async def test_get_window_of_last_n_tokens_keeps_whole_entries(mesh: Mesh) -> None:
    ctx_id = await mesh.create(A)
    await mesh.call(A, "append", {"ctx_id": ctx_id, "entries": convo(10)})
    whole = await mesh.call(A, "get", {"ctx_id": ctx_id})
    tokens = [e["tokens"] for e in whole["entries"]]
    budget = tokens[-1] + tokens[-2] + tokens[-3] + 1  # fits 3 entries, not 4
    got = await mesh.call(A, "get", {"ctx_id": ctx_id, "last_n_tokens": budget})
    assert [e["seq"] for e in got["entries"]] == [7, 8, 9]
    assert got["window"]["tokens"] <= budget
    exact = await mesh.call(A, "get", {"ctx_id": ctx_id, "last_n_tokens": budget - 1 + tokens[-4]})
    assert [e["seq"] for e in exact["entries"]] == [6, 7, 8, 9]
    too_small = await mesh.call(A, "get", {"ctx_id": ctx_id, "last_n_tokens": tokens[-1] - 1})
    assert too_small["entries"] == []
    both = await mesh.call(A, "get", {"ctx_id": ctx_id, "last_n_tokens": budget, "last_n": 2})
    assert [e["seq"] for e in both["entries"]] == [8, 9]


async def test_get_after_seq_reads_what_is_new(mesh: Mesh) -> None:
    ctx_id = await mesh.create(A)
    await mesh.call(A, "append", {"ctx_id": ctx_id, "entries": convo(5)})
    got = await mesh.call(A, "get", {"ctx_id": ctx_id, "after_seq": 2})
    assert [e["seq"] for e in got["entries"]] == [3, 4]


async def test_whole_get_larger_than_one_reply_comes_in_pages(mesh: Mesh) -> None:
    ctx_id = await mesh.create(A)
    big = "lorem ipsum dolor sit amet " * 3000  # ~81 KB each
    for _ in range(6):
        await mesh.call(A, "append", {"ctx_id": ctx_id, "role": "user", "content": big})
    first = await mesh.call(A, "get", {"ctx_id": ctx_id})
    assert first["window"]["truncated"] is True
    assert 0 < first["window"]["returned"] < 6
    seqs = [e["seq"] for e in first["entries"]]
    after = first["window"]["next_after_seq"]
    while after is not None:
        page = await mesh.call(A, "get", {"ctx_id": ctx_id, "after_seq": after})
        seqs += [e["seq"] for e in page["entries"]]
        after = page["window"].get("next_after_seq")
    assert seqs == list(range(6))
    window = await mesh.call(A, "get", {"ctx_id": ctx_id, "last_n": 6})
    assert window["window"]["truncated"] is True
    assert window["entries"][-1]["seq"] == 5  # a cut window keeps the newest entries


async def test_list_filters_and_paginates_with_an_opaque_cursor(mesh: Mesh) -> None:
    ids = []
    for i in range(7):
        ids.append(
            await mesh.create(
                A,
                f"chat {i}",
                namespace="sales" if i % 2 else "support",
                tags=["even"] if i % 2 == 0 else ["odd"],
            )
        )
    seen: list[tuple[str, str]] = []
    cursor = None
    while True:
        args = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = await mesh.call(A, "list", args, scopes=["context:read"])
        seen += [(c["updated_at"], c["ctx_id"]) for c in page["contexts"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(page["contexts"]) == 3
    assert sorted(ctx_id for _, ctx_id in seen) == sorted(ids)  # each exactly once
    assert seen == sorted(seen, reverse=True)  # newest update first (ties by id)
    support = await mesh.call(A, "list", {"namespace": "support"})
    assert {c["ctx_id"] for c in support["contexts"]} == {ids[i] for i in (0, 2, 4, 6)}
    odd = await mesh.call(A, "list", {"tag": "odd"})
    assert {c["ctx_id"] for c in odd["contexts"]} == {ids[i] for i in (1, 3, 5)}
    await asyncio.sleep(0.01)
    await mesh.call(A, "append", {"ctx_id": ids[0], "role": "user", "content": "bump"})
    bumped = await mesh.call(A, "get", {"ctx_id": ids[0], "last_n": 1})
    since = await mesh.call(A, "list", {"updated_since": bumped["updated_at"]})
    assert [c["ctx_id"] for c in since["contexts"]] == [ids[0]]


async def test_search_by_title_and_by_content(mesh: Mesh) -> None:
    billing = await mesh.create(A, "Billing question")
    other = await mesh.create(A, "Other")
    await mesh.call(A, "append", {"ctx_id": other, "role": "user", "content": "my INVOICE is wrong"})
    compressed = await mesh.create(A, "Long one")
    await mesh.call(
        A, "append", {"ctx_id": compressed, "role": "user", "content": "padding " * 2000 + "needle-in-zlib"}
    )
    by_title = await mesh.call(A, "search", {"text": "billing"})
    assert [c["ctx_id"] for c in by_title["contexts"]] == [billing]
    by_content = await mesh.call(A, "search", {"text": "invoice"})
    assert [c["ctx_id"] for c in by_content["contexts"]] == [other]
    assert (await mesh.call(A, "search", {"text": "invoice", "in_content": False}))["contexts"] == []
    in_zlib = await mesh.call(A, "search", {"text": "NEEDLE-in"})
    assert [c["ctx_id"] for c in in_zlib["contexts"]] == [compressed]


async def test_update_title_tags_metadata(mesh: Mesh) -> None:
    ctx_id = await mesh.create(A, "old", tags=["a"], metadata={"k": 1})
    updated = await mesh.call(
        A,
        "update",
        {"ctx_id": ctx_id, "title": "new", "tags": ["b", "c"], "metadata": {"k": 2, "nested": {"x": [1, 2]}}},
        scopes=["context:write"],
    )
    assert (updated["title"], updated["tags"], updated["metadata"]) == (
        "new",
        ["b", "c"],
        {"k": 2, "nested": {"x": [1, 2]}},
    )
    got = await mesh.call(A, "get", {"ctx_id": ctx_id})
    assert got["title"] == "new" and got["updated_at"] >= got["created_at"]
    only_title = await mesh.call(A, "update", {"ctx_id": ctx_id, "title": "newer"})
    assert only_title["tags"] == ["b", "c"]


async def test_delete_removes_context_entries_and_shares(mesh: Mesh) -> None:
    ctx_id = await mesh.create(A)
    await mesh.call(A, "append", {"ctx_id": ctx_id, "entries": convo(4)})
    await mesh.call(A, "share", {"ctx_id": ctx_id, "grantee": B})
    deleted = await mesh.call(A, "delete", {"ctx_id": ctx_id}, scopes=["context:write"])
    assert deleted["deleted"] == ctx_id
    assert "not found" in await mesh.fails(A, "get", {"ctx_id": ctx_id})
    assert "not found" in await mesh.fails(B, "get", {"ctx_id": ctx_id})
    entries = await mesh.collection(A, "entries")
    assert await entries.count_documents({"ctx_id": ctx_id}) == 0
    assert (await mesh.call(B, "shared_with_me"))["shares"] == []
    grants = await mesh.collection(B, "grants")
    assert await grants.count_documents({}) == 0
    assert "not found" in await mesh.fails(A, "delete", {"ctx_id": ctx_id})


async def test_share_read_grant_lets_the_grantee_read_with_attribution(local_mesh: Mesh) -> None:
    ctx_id = await local_mesh.create(A, "shared chat")
    await local_mesh.call(A, "append", {"ctx_id": ctx_id, "entries": convo(3)})
    share = await local_mesh.call(
        A, "share", {"ctx_id": ctx_id, "grantee": B, "require_attribution": True}, scopes=["context:write"]
    )
    assert share["share_id"].startswith("shr-")
    assert (share["grantee"], share["access"], share["expires_at"]) == (B, "read", None)
    got = await local_mesh.call(B, "get", {"ctx_id": ctx_id, "last_n": 2})
    assert [e["seq"] for e in got["entries"]] == [1, 2]
    assert got["access"] == "read"
    assert got["attribution"]["owner_org"] == A
    mine = await local_mesh.call(B, "shared_with_me", scopes=["context:read"])
    assert [(s["ctx_id"], s["owner_org"], s["access"], s["title"]) for s in mine["shares"]] == [
        (ctx_id, A, "read", "shared chat")
    ]
    listed = await local_mesh.call(A, "list_shares", {"ctx_id": ctx_id})
    assert [s["share_id"] for s in listed["shares"]] == [share["share_id"]]


async def test_share_without_attribution_does_not_name_the_owner(mesh: Mesh) -> None:
    ctx_id = await mesh.create(A)
    await mesh.call(A, "share", {"ctx_id": ctx_id, "grantee": B})
    got = await mesh.call(B, "get", {"ctx_id": ctx_id})
    assert "attribution" not in got
    assert A not in json.dumps(got)


async def test_write_grant_lets_the_grantee_append_and_update(local_mesh: Mesh) -> None:
    ctx_id = await local_mesh.create(A)
    await local_mesh.call(A, "share", {"ctx_id": ctx_id, "grantee": B, "access": "write"})
    appended = await local_mesh.call(
        B, "append", {"ctx_id": ctx_id, "role": "user", "content": "from globex"}
    )
    assert appended["first_seq"] == 0
    await local_mesh.call(B, "update", {"ctx_id": ctx_id, "title": "renamed by globex"})
    got = await local_mesh.call(A, "get", {"ctx_id": ctx_id})
    assert got["title"] == "renamed by globex"
    assert [e["content"] for e in got["entries"]] == ["from globex"]


async def test_revoke_share_by_id_and_by_grantee(local_mesh: Mesh) -> None:
    first = await local_mesh.create(A)
    second = await local_mesh.create(A)
    share = await local_mesh.call(A, "share", {"ctx_id": first, "grantee": B})
    await local_mesh.call(A, "share", {"ctx_id": second, "grantee": B})
    revoked = await local_mesh.call(
        A, "revoke_share", {"share_id": share["share_id"]}, scopes=["context:write"]
    )
    assert revoked["revoked"] == [share["share_id"]]
    assert "not found" in await local_mesh.fails(B, "get", {"ctx_id": first})
    await local_mesh.call(B, "get", {"ctx_id": second})
    await local_mesh.call(A, "revoke_share", {"ctx_id": second, "grantee": B})
    assert "not found" in await local_mesh.fails(B, "get", {"ctx_id": second})
    assert (await local_mesh.call(B, "shared_with_me"))["shares"] == []


async def test_sharing_a_namespace_covers_its_contexts_now_and_later(local_mesh: Mesh) -> None:
    before = await local_mesh.create(A, "before", namespace="kb")
    outside = await local_mesh.create(A, "outside", namespace="private")
    await local_mesh.call(A, "share", {"namespace": "kb", "grantee": B})
    after = await local_mesh.create(A, "after", namespace="kb")
    for ctx_id in (before, after):
        assert (await local_mesh.call(B, "get", {"ctx_id": ctx_id}))["access"] == "read"
    assert "not found" in await local_mesh.fails(B, "get", {"ctx_id": outside})
    listed = await local_mesh.call(B, "list", {"namespace": "kb", "owner_org": A})
    assert {c["ctx_id"] for c in listed["contexts"]} == {before, after}
    assert listed["owner_org"] == A
    mine = await local_mesh.call(B, "shared_with_me")
    assert [(s["target"], s["namespace"]) for s in mine["shares"]] == [("namespace", "kb")]
    found = await local_mesh.call(B, "search", {"text": "after", "namespace": "kb", "owner_org": A})
    assert [c["ctx_id"] for c in found["contexts"]] == [after]


async def test_resharing_when_allowed(mesh: Mesh) -> None:
    c = "org-initech"
    ctx_id = await mesh.create(A)
    await mesh.call(
        A,
        "share",
        {
            "ctx_id": ctx_id,
            "grantee": B,
            "access": "write",
            "allow_resharing": True,
            "require_attribution": True,
        },
    )
    reshare = await mesh.call(B, "share", {"ctx_id": ctx_id, "grantee": c, "access": "read"})
    assert reshare["granted_by"] == B and reshare["require_attribution"] is True  # inherited
    got = await mesh.call(c, "get", {"ctx_id": ctx_id})
    assert got["attribution"]["owner_org"] == A
    # revoking B's grant revokes what B reshared
    await mesh.call(A, "revoke_share", {"ctx_id": ctx_id, "grantee": B})
    assert "not found" in await mesh.fails(c, "get", {"ctx_id": ctx_id})


async def test_resource_reads_a_context(mesh: Mesh) -> None:
    ctx_id = await mesh.create(A, "as resource")
    await mesh.call(A, "append", {"ctx_id": ctx_id, "entries": convo(2)})
    result = await mesh.harness.request(
        A, "resources/read", {"uri": f"context://{ctx_id}"}, scopes=["context:read"]
    )
    body = json.loads(result["contents"][0]["text"])
    assert result["contents"][0]["mimeType"] == "application/json"
    assert body["title"] == "as resource" and len(body["entries"]) == 2
    try:
        await mesh.harness.request(B, "resources/read", {"uri": f"context://{ctx_id}"})
    except MeshException as exc:
        assert exc.error.code is ErrorCode.NOT_FOUND
        assert "not found" in exc.error.message
    else:
        raise AssertionError("another org read the resource")


async def test_system_namespace_readable_by_all_writable_with_admin(mesh: Mesh) -> None:
    text = await mesh.fails(A, "create", {"title": "policy", "namespace": "system/policies"})
    assert "admin" in text
    created = await mesh.call(
        A, "create", {"title": "policy", "namespace": "system/policies"}, scopes=["context:write", "admin"]
    )
    ctx_id = created["ctx_id"]
    await mesh.call(
        A,
        "append",
        {"ctx_id": ctx_id, "role": "system", "content": "Be kind."},
        scopes=["context:write", "admin"],
    )
    got = await mesh.call(B, "get", {"ctx_id": ctx_id})
    assert got["access"] == "system" and got["entries"][0]["content"] == "Be kind."
    listed = await mesh.call(B, "list", {"namespace": "system/policies"})
    assert [c["ctx_id"] for c in listed["contexts"]] == [ctx_id]
    assert "admin" in await mesh.fails(B, "append", {"ctx_id": ctx_id, "role": "user", "content": "x"})
    assert "admin" in await mesh.fails(B, "update", {"ctx_id": ctx_id, "title": "hijack"})
    assert "admin" in await mesh.fails(B, "delete", {"ctx_id": ctx_id})
    assert "cannot be shared" in await mesh.fails(
        B, "share", {"ctx_id": ctx_id, "grantee": A}, scopes=["context:write", "admin"]
    )
    await mesh.call(B, "delete", {"ctx_id": ctx_id}, scopes=["context:write", "admin"])
    assert "not found" in await mesh.fails(A, "get", {"ctx_id": ctx_id})


async def test_a_resharer_can_revoke_its_own_reshare_only(mesh: Mesh) -> None:
    c = "org-initech"
    ctx_id = await mesh.create(A)
    own = await mesh.call(A, "share", {"ctx_id": ctx_id, "grantee": B, "allow_resharing": True})
    reshare = await mesh.call(B, "share", {"ctx_id": ctx_id, "grantee": c})
    listed = await mesh.call(A, "list_shares", {"ctx_id": ctx_id})
    assert {(s["grantee"], s["granted_by"]) for s in listed["shares"]} == {(B, A), (c, B)}
    assert "not found" in await mesh.fails(B, "revoke_share", {"share_id": own["share_id"]})
    assert (await mesh.call(B, "revoke_share", {"share_id": reshare["share_id"]}))["revoked"] == [
        reshare["share_id"]
    ]
    assert "not found" in await mesh.fails(c, "get", {"ctx_id": ctx_id})
    assert (await mesh.call(B, "get", {"ctx_id": ctx_id}))["access"] == "read"
