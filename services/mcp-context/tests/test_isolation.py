"""Isolation between orgs, through every tool: guessing ids or namespaces gets nothing, grants give
exactly what they say until they expire or are revoked, and resharing needs permission."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mcpmesh.context.ids import new_context_id
from mcpmesh.context.sweep import sweep
from mcpmesh.context.testing import Mesh
from mcpmesh.proto.errors import ErrorCode, MeshException

A = "org-acme"
B = "org-globex"
C = "org-initech"


async def _seeded(mesh: Mesh) -> str:
    ctx_id = await mesh.create(A, "acme secret", namespace="secret", tags=["confidential"])
    await mesh.call(
        A,
        "append",
        {
            "ctx_id": ctx_id,
            "entries": [
                {"role": "user", "content": "the launch code is swordfish"},
                {"role": "assistant", "content": "noted"},
            ],
        },
    )
    return ctx_id


async def _unchanged(mesh: Mesh, ctx_id: str) -> None:
    got = await mesh.call(A, "get", {"ctx_id": ctx_id})
    assert got["title"] == "acme secret" and got["tags"] == ["confidential"]
    assert [e["content"] for e in got["entries"]] == ["the launch code is swordfish", "noted"]


def _attempts(ctx_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("get", {"ctx_id": ctx_id}),
        ("get", {"ctx_id": ctx_id, "last_n": 1}),
        ("append", {"ctx_id": ctx_id, "role": "user", "content": "injected"}),
        ("update", {"ctx_id": ctx_id, "title": "pwned"}),
        ("delete", {"ctx_id": ctx_id}),
        ("share", {"ctx_id": ctx_id, "grantee": C}),
        ("list_shares", {"ctx_id": ctx_id}),
        ("revoke_share", {"ctx_id": ctx_id, "grantee": C}),
    ]


@pytest.mark.parametrize("cold", [False, True], ids=["hot", "cold"])
async def test_guessed_ids_get_the_same_not_found_as_unknown_ids(mesh: Mesh, cold: bool) -> None:
    ctx_id = await _seeded(mesh)
    if cold:
        assert (await sweep(mesh.app, now=datetime.now(UTC) + timedelta(days=30)))["moved_to_cold"] == 1
    unknown = new_context_id()
    for (tool, args), (_, unknown_args) in zip(_attempts(ctx_id), _attempts(unknown), strict=True):
        text = await mesh.fails(B, tool, args)
        assert text == (await mesh.fails(B, tool, unknown_args)).replace(unknown, ctx_id), tool
        assert "not found" in text and A not in text, tool
    if cold:  # B's attempts did not even bring A's context back to the hot tier
        contexts_cold = await mesh.collection(A, "contexts_cold")
        assert await contexts_cold.count_documents({"_id": ctx_id}) == 1
    await _unchanged(mesh, ctx_id)


async def test_guessed_ids_through_the_resource(mesh: Mesh) -> None:
    ctx_id = await _seeded(mesh)
    with pytest.raises(MeshException) as info:
        await mesh.harness.request(B, "resources/read", {"uri": f"context://{ctx_id}"})
    assert info.value.error.code is ErrorCode.NOT_FOUND and "swordfish" not in info.value.error.message


async def test_guessed_namespaces_list_and_search_nothing(mesh: Mesh) -> None:
    ctx_id = await _seeded(mesh)
    mine = await mesh.create(B, "globex own", namespace="secret")
    listed = await mesh.call(B, "list", {"namespace": "secret"})
    assert [c["ctx_id"] for c in listed["contexts"]] == [mine]
    assert [c["ctx_id"] for c in (await mesh.call(B, "list"))["contexts"]] == [mine]
    assert (await mesh.call(B, "list", {"tag": "confidential"}))["contexts"] == []
    assert (await mesh.call(B, "search", {"text": "swordfish"}))["contexts"] == []
    assert (await mesh.call(B, "search", {"text": "acme secret"}))["contexts"] == []
    text = await mesh.fails(B, "list", {"namespace": "secret", "owner_org": A})
    assert "not_found" in text
    assert text == (await mesh.fails(B, "list", {"namespace": "nothing-here", "owner_org": A})).replace(
        "nothing-here", "secret"
    )
    assert "not_found" in await mesh.fails(
        B, "search", {"text": "swordfish", "namespace": "secret", "owner_org": A}
    )
    assert "not_found" in await mesh.fails(B, "share", {"namespace": "secret", "owner_org": A, "grantee": C})
    assert ctx_id not in str(await mesh.call(B, "shared_with_me"))


async def test_guessed_share_ids_cannot_be_revoked_by_others(mesh: Mesh) -> None:
    ctx_id = await _seeded(mesh)
    share = await mesh.call(A, "share", {"ctx_id": ctx_id, "grantee": C})
    text = await mesh.fails(B, "revoke_share", {"share_id": share["share_id"]})
    assert "not found" in text
    assert (await mesh.call(C, "get", {"ctx_id": ctx_id}))["access"] == "read"
    # even the grantee cannot revoke the owner's share
    assert "not found" in await mesh.fails(C, "revoke_share", {"share_id": share["share_id"]})


async def test_a_forged_grant_pointer_grants_nothing(mesh: Mesh) -> None:
    ctx_id = await _seeded(mesh)
    grants = await mesh.collection(B, "grants")  # as if B could write its own grant index
    await grants.insert_one({"_id": "shr-" + "a" * 24, "owner": A, "target": "context", "ctx_id": ctx_id})
    await grants.insert_one(
        {"_id": "shr-" + "b" * 24, "owner": A, "target": "namespace", "namespace": "secret"}
    )
    assert "not found" in await mesh.fails(B, "get", {"ctx_id": ctx_id})
    assert "not_found" in await mesh.fails(B, "list", {"namespace": "secret", "owner_org": A})
    assert (await mesh.call(B, "shared_with_me"))["shares"] == []


async def test_a_share_for_another_grantee_does_not_work_for_me(mesh: Mesh) -> None:
    ctx_id = await _seeded(mesh)
    share = await mesh.call(A, "share", {"ctx_id": ctx_id, "grantee": C})
    grants = await mesh.collection(B, "grants")  # B copies C's pointer
    await grants.insert_one({"_id": share["share_id"], "owner": A, "target": "context", "ctx_id": ctx_id})
    assert "not found" in await mesh.fails(B, "get", {"ctx_id": ctx_id})


async def test_read_grant_does_not_allow_writes(mesh: Mesh) -> None:
    ctx_id = await _seeded(mesh)
    await mesh.call(A, "share", {"ctx_id": ctx_id, "grantee": B, "access": "read"})
    assert (await mesh.call(B, "get", {"ctx_id": ctx_id}))["access"] == "read"
    assert "read-only" in await mesh.fails(B, "append", {"ctx_id": ctx_id, "role": "user", "content": "x"})
    assert "read-only" in await mesh.fails(B, "update", {"ctx_id": ctx_id, "title": "pwned"})
    assert "only the owner" in await mesh.fails(B, "delete", {"ctx_id": ctx_id})
    assert "resharing" in await mesh.fails(B, "share", {"ctx_id": ctx_id, "grantee": C})
    await _unchanged(mesh, ctx_id)


async def test_write_grant_does_not_allow_delete(mesh: Mesh) -> None:
    ctx_id = await _seeded(mesh)
    await mesh.call(A, "share", {"ctx_id": ctx_id, "grantee": B, "access": "write"})
    assert "only the owner" in await mesh.fails(B, "delete", {"ctx_id": ctx_id})
    await mesh.call(A, "get", {"ctx_id": ctx_id})


async def test_scopes_still_apply_to_grantees(mesh: Mesh) -> None:
    ctx_id = await _seeded(mesh)
    await mesh.call(A, "share", {"ctx_id": ctx_id, "grantee": B, "access": "write"})
    with pytest.raises(MeshException) as info:
        await mesh.call(
            B, "append", {"ctx_id": ctx_id, "role": "user", "content": "x"}, scopes=["context:read"]
        )
    assert info.value.error.code is ErrorCode.FORBIDDEN


async def test_expired_grant_allows_nothing(mesh: Mesh) -> None:
    ctx_id = await _seeded(mesh)
    await mesh.call(
        A, "share", {"namespace": "secret", "grantee": C, "access": "write"}
    )  # control: stays valid
    await mesh.call(
        A,
        "share",
        {"ctx_id": ctx_id, "grantee": B, "access": "write", "expires_in_s": 0.6, "allow_resharing": True},
    )
    await mesh.call(A, "share", {"namespace": "secret", "grantee": B, "access": "read", "expires_in_s": 0.6})
    assert (await mesh.call(B, "get", {"ctx_id": ctx_id}))["access"] == "write"
    assert len((await mesh.call(B, "shared_with_me"))["shares"]) == 2
    await asyncio.sleep(0.8)
    for tool, args in _attempts(ctx_id)[:4]:
        assert "not found" in await mesh.fails(B, tool, args), tool
    assert "not_found" in await mesh.fails(B, "list", {"namespace": "secret", "owner_org": A})
    assert "not found" in await mesh.fails(B, "share", {"ctx_id": ctx_id, "grantee": "org-hooli"})
    assert (await mesh.call(B, "shared_with_me"))["shares"] == []
    assert (await mesh.call(C, "get", {"ctx_id": ctx_id}))["access"] == "write"
    await _unchanged(mesh, ctx_id)


async def test_expires_at_in_the_past_is_refused(mesh: Mesh) -> None:
    ctx_id = await _seeded(mesh)
    text = await mesh.fails(
        A, "share", {"ctx_id": ctx_id, "grantee": B, "expires_at": "2020-01-01T00:00:00Z"}
    )
    assert "in the future" in text
    assert "not found" in await mesh.fails(B, "get", {"ctx_id": ctx_id})


async def test_revoked_grant_allows_nothing_from_the_next_call(mesh: Mesh) -> None:
    ctx_id = await _seeded(mesh)
    share = await mesh.call(A, "share", {"ctx_id": ctx_id, "grantee": B, "access": "write"})
    ns_share = await mesh.call(A, "share", {"namespace": "secret", "grantee": B})
    await mesh.call(B, "append", {"ctx_id": ctx_id, "role": "user", "content": "while allowed"})
    await mesh.call(A, "revoke_share", {"share_id": share["share_id"]})
    assert (await mesh.call(B, "get", {"ctx_id": ctx_id}))["access"] == "read"  # the namespace grant remains
    assert "read-only" in await mesh.fails(B, "append", {"ctx_id": ctx_id, "role": "user", "content": "x"})
    await mesh.call(A, "revoke_share", {"share_id": ns_share["share_id"]})
    for tool, args in _attempts(ctx_id):
        assert "not found" in await mesh.fails(B, tool, args), tool
    assert "not_found" in await mesh.fails(B, "list", {"namespace": "secret", "owner_org": A})
    assert (await mesh.call(B, "shared_with_me"))["shares"] == []


async def test_resharing_without_permission_is_refused(mesh: Mesh) -> None:
    ctx_id = await _seeded(mesh)
    await mesh.call(A, "share", {"ctx_id": ctx_id, "grantee": B, "access": "write"})
    await mesh.call(A, "share", {"namespace": "secret", "grantee": B, "access": "write"})
    assert "resharing" in await mesh.fails(B, "share", {"ctx_id": ctx_id, "grantee": C})
    assert "resharing" in await mesh.fails(B, "share", {"namespace": "secret", "owner_org": A, "grantee": C})
    assert "not found" in await mesh.fails(C, "get", {"ctx_id": ctx_id})
    assert (await mesh.call(A, "list_shares"))["shares"].__len__() == 2


async def test_resharing_cannot_widen_the_grant(mesh: Mesh) -> None:
    ctx_id = await _seeded(mesh)
    expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    await mesh.call(
        A,
        "share",
        {"ctx_id": ctx_id, "grantee": B, "access": "read", "allow_resharing": True, "expires_at": expires},
    )
    assert "read access only" in await mesh.fails(
        B, "share", {"ctx_id": ctx_id, "grantee": C, "access": "write"}
    )
    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    assert "cannot be later" in await mesh.fails(
        B, "share", {"ctx_id": ctx_id, "grantee": C, "expires_at": later}
    )
    reshare = await mesh.call(B, "share", {"ctx_id": ctx_id, "grantee": C})
    assert reshare["expires_at"] is not None  # inherits B's expiry
    assert "the owner" in await mesh.fails(B, "share", {"ctx_id": ctx_id, "grantee": A})


async def test_a_reshare_dies_with_the_permission_to_reshare(mesh: Mesh) -> None:
    ctx_id = await _seeded(mesh)
    await mesh.call(A, "share", {"ctx_id": ctx_id, "grantee": B, "allow_resharing": True})
    await mesh.call(B, "share", {"ctx_id": ctx_id, "grantee": C})
    assert (await mesh.call(C, "get", {"ctx_id": ctx_id}))["access"] == "read"
    # the owner re-shares with B without resharing: C's grant no longer holds
    await mesh.call(A, "share", {"ctx_id": ctx_id, "grantee": B, "allow_resharing": False})
    assert "not found" in await mesh.fails(C, "get", {"ctx_id": ctx_id})


async def test_namespace_grant_does_not_reach_other_namespaces_or_moved_contexts(mesh: Mesh) -> None:
    ctx_id = await _seeded(mesh)
    await mesh.call(A, "share", {"namespace": "public", "grantee": B})
    assert "not found" in await mesh.fails(B, "get", {"ctx_id": ctx_id})
    assert (await mesh.call(B, "list", {"namespace": "public", "owner_org": A}))["contexts"] == []
    assert "not_found" in await mesh.fails(B, "list", {"namespace": "secret", "owner_org": A})
