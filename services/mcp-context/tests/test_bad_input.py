"""Bad input gets a clear error that says what is expected, and writes nothing."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest

from mcpmesh.context.clock import MAX_DURATION_S
from mcpmesh.context.ids import new_context_id, new_share_id
from mcpmesh.context.testing import Mesh
from mcpmesh.service.testing import internals_in, logged_failures

A = "org-acme"


async def test_unknown_ids_are_not_found_for_every_tool(mesh: Mesh) -> None:
    unknown = new_context_id()
    for tool, args in [
        ("get", {"ctx_id": unknown}),
        ("append", {"ctx_id": unknown, "role": "user", "content": "x"}),
        ("update", {"ctx_id": unknown, "title": "t"}),
        ("delete", {"ctx_id": unknown}),
        ("share", {"ctx_id": unknown, "grantee": "org-globex"}),
        ("list_shares", {"ctx_id": unknown}),
        ("revoke_share", {"ctx_id": unknown, "grantee": "org-globex"}),
        ("revoke_share", {"share_id": new_share_id()}),
    ]:
        text = await mesh.fails(A, tool, args)
        assert "not_found" in text and "not found" in text, tool


@pytest.mark.parametrize(
    "bad", ["ctx-short", "CTX-AAAAAAAAAAAAAAAAAAAAAAAA", "ctx-" + "1" * 24, "x" * 500, ""]
)
async def test_malformed_ids_say_what_an_id_looks_like(mesh: Mesh, bad: str) -> None:
    text = await mesh.fails(A, "get", {"ctx_id": bad})
    assert "invalid_request" in text and "invalid context id" in text and "'ctx-' followed by 24" in text
    assert "x" * 100 not in text  # long values are not echoed


async def test_oversized_entry_is_refused_and_nothing_is_written(mesh: Mesh) -> None:
    ctx_id = await mesh.create(A)
    limit = mesh.app.settings.max_entry_bytes
    text = await mesh.fails(
        A,
        "append",
        {
            "ctx_id": ctx_id,
            "entries": [
                {"role": "user", "content": "fine"},
                {"role": "user", "content": "é" * (limit // 2 + 1)},  # 2 bytes each in UTF-8
            ],
        },
    )
    assert (
        "limit_exceeded" in text
        and f"entry 1 is {limit + 2} bytes" in text
        and f"at most {limit} bytes" in text
    )
    got = await mesh.call(A, "get", {"ctx_id": ctx_id})
    assert got["entries"] == [] and got["token_total"] == 0
    await mesh.call(
        A, "append", {"ctx_id": ctx_id, "role": "user", "content": "x" * limit}
    )  # the limit itself is fine


@pytest.mark.parametrize("role", ["bot", "USER", "", "developer"])
async def test_bad_roles_are_refused(mesh: Mesh, role: str) -> None:
    ctx_id = await mesh.create(A)
    text = await mesh.fails(A, "append", {"ctx_id": ctx_id, "role": role, "content": "hi"})
    assert "invalid_request" in text and "is not one of system, user, assistant, tool" in text
    text = await mesh.fails(
        A,
        "append",
        {
            "ctx_id": ctx_id,
            "entries": [
                {"role": "user", "content": "ok"},
                {"role": role, "content": "hi"},
            ],
        },
    )
    assert "entry 1: role" in text
    assert (await mesh.call(A, "get", {"ctx_id": ctx_id}))["entries"] == []


async def test_malformed_appends(mesh: Mesh) -> None:
    ctx_id = await mesh.create(A)
    assert "nothing to append" in await mesh.fails(A, "append", {"ctx_id": ctx_id})
    assert "nothing to append" in await mesh.fails(A, "append", {"ctx_id": ctx_id, "entries": []})
    assert "content must be a string" in await mesh.fails(A, "append", {"ctx_id": ctx_id, "role": "user"})
    both = {"ctx_id": ctx_id, "role": "user", "content": "x", "entries": [{"role": "user", "content": "y"}]}
    assert "not both" in await mesh.fails(A, "append", both)
    bad_name = {"ctx_id": ctx_id, "role": "tool", "content": "x", "name": "has spaces"}
    assert "name must be" in await mesh.fails(A, "append", bad_name)
    assert "content" in await mesh.fails(A, "append", {"ctx_id": ctx_id, "entries": [{"role": "user"}]})


async def test_bad_cursors_get_a_clear_error(mesh: Mesh) -> None:
    for i in range(3):
        await mesh.create(A, f"c{i}")
    page = await mesh.call(A, "list", {"limit": 1})
    cursor = page["next_cursor"]
    assert cursor
    assert len((await mesh.call(A, "list", {"limit": 1, "cursor": cursor}))["contexts"]) == 1
    for bad in ["garbage!!", "", "e30", base64.urlsafe_b64encode(b"[1,2,3]").decode(), "A" * 2000]:
        text = await mesh.fails(A, "list", {"limit": 1, "cursor": bad})
        assert "invalid_request" in text and "invalid cursor" in text, bad
    decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    decoded[3] = "ctx-../../etc"  # edited position
    edited = base64.urlsafe_b64encode(json.dumps(decoded).encode()).decode()
    assert "invalid cursor" in await mesh.fails(A, "list", {"limit": 1, "cursor": edited})
    decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    for position in (10**30, 2**53 - 1):  # positions no timestamp can have
        decoded[2] = position
        huge = base64.urlsafe_b64encode(json.dumps(decoded).encode()).decode()
        assert "invalid cursor" in await mesh.fails(A, "list", {"limit": 1, "cursor": huge})
    other_query = await mesh.fails(A, "list", {"limit": 1, "cursor": cursor, "namespace": "elsewhere"})
    assert "different query" in other_query
    assert "different query" in await mesh.fails(A, "search", {"text": "c", "cursor": cursor})
    assert "invalid cursor" in await mesh.fails(A, "shared_with_me", {"cursor": "nope"})
    assert "invalid cursor" in await mesh.fails(A, "list_shares", {"cursor": "nope"})


@pytest.mark.parametrize(
    "namespace",
    [
        "Team",
        "team//x",
        "../etc",
        "/abs",
        "trailing/",
        "sp ace",
        "-dash",
        "a" * 65,
        "/".join(["a"] * 9),
        "ünï",
    ],
)
async def test_invalid_namespace_names(mesh: Mesh, namespace: str) -> None:
    for tool, args in [
        ("create", {"title": "t", "namespace": namespace}),
        ("list", {"namespace": namespace}),
        ("search", {"text": "t", "namespace": namespace}),
        ("share", {"namespace": namespace, "grantee": "org-globex"}),
    ]:
        text = await mesh.fails(A, tool, args)
        assert "invalid_request" in text and "invalid namespace" in text and "e.g. 'default'" in text, tool
    assert (await mesh.call(A, "list"))["contexts"] == []


async def test_valid_namespace_names(mesh: Mesh) -> None:
    for namespace in ["default", "team/support", "a.b_c-d/0", "/".join(["n"] * 8)]:
        created = await mesh.call(A, "create", {"title": "t", "namespace": namespace})
        assert created["namespace"] == namespace


async def test_bad_context_fields(mesh: Mesh) -> None:
    assert "title must be" in await mesh.fails(A, "create", {"title": "   "})
    assert "title must be" in await mesh.fails(A, "create", {"title": "x" * 201})
    assert "invalid tag" in await mesh.fails(A, "create", {"title": "t", "tags": ["has space"]})
    assert "at most 32 tags" in await mesh.fails(
        A, "create", {"title": "t", "tags": [f"t{i}" for i in range(33)]}
    )
    assert "metadata key" in await mesh.fails(A, "create", {"title": "t", "metadata": {"$where": 1}})
    assert "metadata key" in await mesh.fails(A, "create", {"title": "t", "metadata": {"a": {"b.c": 1}}})
    assert "at most 16384 bytes" in await mesh.fails(
        A, "create", {"title": "t", "metadata": {"k": "v" * 20_000}}
    )
    ctx_id = await mesh.create(A)
    assert "nothing to update" in await mesh.fails(A, "update", {"ctx_id": ctx_id})
    assert "invalid tag" in await mesh.fails(A, "update", {"ctx_id": ctx_id, "tags": ["!"]})
    assert (await mesh.call(A, "list"))["contexts"][0]["tags"] == []


async def test_bad_read_parameters(mesh: Mesh) -> None:
    ctx_id = await mesh.create(A)
    assert "last_n must be a positive integer" in await mesh.fails(A, "get", {"ctx_id": ctx_id, "last_n": 0})
    assert "last_n_tokens must be" in await mesh.fails(A, "get", {"ctx_id": ctx_id, "last_n_tokens": -5})
    assert "after_seq must be" in await mesh.fails(A, "get", {"ctx_id": ctx_id, "after_seq": -7})
    assert "limit must be an integer from 1 to 100" in await mesh.fails(A, "list", {"limit": 0})
    assert "limit must be" in await mesh.fails(A, "list", {"limit": 1000})
    assert "ISO 8601" in await mesh.fails(A, "list", {"updated_since": "yesterday"})
    assert "text must be" in await mesh.fails(A, "search", {"text": " "})
    assert "owner_org" in await mesh.fails(A, "list", {"owner_org": "org-globex"})


async def test_bad_share_parameters(mesh: Mesh) -> None:
    ctx_id = await mesh.create(A)
    assert "grantee: invalid org id" in await mesh.fails(
        A, "share", {"ctx_id": ctx_id, "grantee": "Globex Inc"}
    )
    assert "your own org" in await mesh.fails(A, "share", {"ctx_id": ctx_id, "grantee": A})
    assert "system org" in await mesh.fails(A, "share", {"ctx_id": ctx_id, "grantee": "org-system"})
    assert "'read' or 'write'" in await mesh.fails(
        A, "share", {"ctx_id": ctx_id, "grantee": "org-b12", "access": "admin"}
    )
    assert "exactly one of" in await mesh.fails(A, "share", {"grantee": "org-b12"})
    assert "exactly one of" in await mesh.fails(
        A, "share", {"ctx_id": ctx_id, "namespace": "x", "grantee": "org-b12"}
    )
    assert "ISO 8601" in await mesh.fails(
        A, "share", {"ctx_id": ctx_id, "grantee": "org-b12", "expires_at": "soon"}
    )
    assert "not both" in await mesh.fails(
        A, "share", {"ctx_id": ctx_id, "grantee": "org-b12", "expires_at": "2999-01-01", "expires_in_s": 5}
    )
    assert "cannot be shared" in await mesh.fails(A, "share", {"namespace": "system/x", "grantee": "org-b12"})
    assert "invalid share id" in await mesh.fails(A, "revoke_share", {"share_id": "shr-nope"})
    assert "give share_id" in await mesh.fails(A, "revoke_share", {"grantee": "org-b12"})
    assert (await mesh.call(A, "list_shares"))["shares"] == []


DURATION = f"expires_in_s must be a number of seconds above 0 and at most {MAX_DURATION_S} (100 years)"
TIME = "must be an ISO 8601 timestamp between the years 1 and 9999 (UTC), such as 2026-01-31T12:00:00Z"
YEAR_1_EAST = "0001-01-01T00:00:00+05:00"  # before year 1 once in UTC
YEAR_9999_WEST = "9999-12-31T23:59:59-05:00"  # after year 9999 once in UTC
OUT_OF_RANGE: list[tuple[str, dict[str, Any], str]] = [
    ("share", {"expires_in_s": 1e12}, DURATION),
    ("share", {"expires_in_s": 1e308}, DURATION),
    ("share", {"expires_in_s": "nan"}, DURATION),
    ("share", {"expires_in_s": "inf"}, DURATION),
    ("share", {"expires_in_s": 0}, DURATION),
    ("share", {"expires_in_s": -5}, DURATION),
    ("share", {"expires_at": YEAR_1_EAST}, "expires_at " + TIME),
    ("share", {"expires_at": YEAR_9999_WEST}, "expires_at " + TIME),
    ("share", {"expires_at": "2026-01-01" + "0" * 5000}, "expires_at " + TIME),
    ("list", {"updated_since": YEAR_1_EAST}, "updated_since " + TIME),
    ("list", {"updated_since": YEAR_9999_WEST}, "updated_since " + TIME),
    ("search", {"text": "x", "updated_since": YEAR_9999_WEST}, "updated_since " + TIME),
    ("get", {"last_n": 10**30}, "last_n must be a positive integer (at most 9007199254740991)"),
    ("get", {"last_n_tokens": 2**53}, "last_n_tokens must be a positive integer (at most 9007199254740991)"),
    ("get", {"after_seq": 10**30}, "after_seq must be an integer >= -1 (at most 9007199254740991)"),
    ("create", {"title": "t", "metadata": {"n": 10**30}}, "integers must fit in 64 bits"),
    ("create", {"title": "t", "metadata": {"n": [1, {"m": 2**63}]}}, "integers must fit in 64 bits"),
    ("update", {"metadata": {"n": -(2**63) - 1}}, "integers must fit in 64 bits"),
    ("get", {"ctx_id": 5}, "invalid arguments: ctx_id: expected a string"),
    ("get", {"last_n": "abc"}, "invalid arguments: last_n: expected an integer"),
    ("list", {"limit": 1e308}, "invalid arguments: limit: expected a smaller integer"),
    (
        "append",
        {"entries": [{"role": "user", "content": 5}]},
        "invalid arguments: entries[0].content: expected a string",
    ),
    ("append", {"entries": [{"role": "user"}]}, "invalid arguments: entries[0].content: required"),
    ("create", {"title": "t", "tags": "x" * 100_000}, "invalid arguments: tags: expected a list"),
    ("share", {"allow_resharing": "maybe"}, "invalid arguments: allow_resharing: expected true or false"),
]
#: Arguments each tool needs besides the one under test.
NEEDS = {"share": {"grantee": "org-b12"}, "get": {}, "append": {}, "update": {}}


@pytest.mark.parametrize(
    ("tool", "args", "expected"), OUT_OF_RANGE, ids=[f"{t}-{e[:24]}" for t, _, e in OUT_OF_RANGE]
)
async def test_out_of_range_and_mistyped_values_are_invalid_requests(
    mesh: Mesh, caplog: pytest.LogCaptureFixture, tool: str, args: dict[str, Any], expected: str
) -> None:
    """Values that once failed deep inside (OverflowError, a driver refusing a huge int, pydantic's
    own text) are refused up front with what was wrong, and nothing is logged as a failure."""
    caplog.set_level(logging.INFO)
    ctx_id = await mesh.create(A)
    needs = {"ctx_id": ctx_id, **NEEDS[tool]} if tool in NEEDS else {}
    text = await mesh.fails(A, tool, {**needs, **args})
    assert "invalid_request" in text and expected in text, text
    assert internals_in(text) == [] and "0" * 100 not in text and "x" * 100 not in text, text
    assert logged_failures(caplog.records) == []
    assert (await mesh.call(A, "list_shares"))["shares"] == []
    assert [c["ctx_id"] for c in (await mesh.call(A, "list"))["contexts"]] == [ctx_id]


async def test_the_edges_of_the_ranges_are_accepted(mesh: Mesh) -> None:
    ctx_id = await mesh.create(A)
    share = {"ctx_id": ctx_id, "grantee": "org-b12"}
    assert (await mesh.call(A, "share", {**share, "expires_in_s": MAX_DURATION_S}))["expires_at"] > "2100"
    await mesh.call(A, "revoke_share", share)
    edge = await mesh.call(A, "share", {**share, "expires_at": "9999-12-31T23:59:59+05:00"})
    assert edge["expires_at"] == "9999-12-31T18:59:59.000Z"
    for since in ("0001-01-01T00:00:00Z", "0001-01-01T05:00:00+05:00"):
        assert [c["ctx_id"] for c in (await mesh.call(A, "list", {"updated_since": since}))["contexts"]] == [
            ctx_id
        ]
    assert (await mesh.call(A, "list", {"updated_since": "9999-12-31T23:59:59Z"}))["contexts"] == []
    got = await mesh.call(A, "get", {"ctx_id": ctx_id, "last_n": 2**53 - 1, "after_seq": -1})
    assert got["entries"] == []
    created = await mesh.call(A, "create", {"title": "t", "metadata": {"big": 2**63 - 1, "small": -(2**63)}})
    assert created["metadata"] == {"big": 2**63 - 1, "small": -(2**63)}
