"""Per-document access control: a document limited to some keys, scopes or key tags is invisible
(not found) to the org's other keys in search, answer, get, list, update and delete; the owner
org's admin scope still sees and manages it."""

from __future__ import annotations

from typing import Any

from mcpmesh.proto.errors import ErrorCode
from mcpmesh.rag.testing import RW, Rag, org
from mcpmesh.service.testing import ToolFailed


async def as_key(
    rag: Rag,
    org_id: str,
    sub: str,
    tool: str,
    args: dict[str, Any],
    scopes: list[str] = RW,
    tags: list[str] | None = None,
) -> Any:
    stamp = rag.harness.stamp(org_id, scopes, sub=sub, key_tags=tags)
    return await rag.harness.call_tool(org_id, tool, args, stamp=stamp)


async def not_found(rag: Rag, org_id: str, tool: str, args: dict[str, Any], tags: list[str] | None) -> None:
    try:
        await as_key(rag, org_id, "key-plain", tool, args, tags=tags)
    except ToolFailed as failed:
        assert failed.error is not None and failed.error.code == ErrorCode.NOT_FOUND, failed.text
    else:
        raise AssertionError(f"{tool} reached a document the key may not see")


async def test_documents_limited_to_keys_or_scopes(rag: Rag) -> None:
    a = org()
    await rag.call(a, "create_kb", {"kb": "hr"})
    salary = {
        "kb": "hr",
        "content": "Salary bands for engineers are reviewed in March.",
        "doc_id": "salaries",
    }
    await rag.call(a, "add_document", {**salary, "visible_to": {"keys": ["key-hr"]}})
    edits = {"kb": "hr", "content": "Engineers edit the handbook in March.", "doc_id": "editing"}
    await rag.call(a, "add_document", {**edits, "visible_to": {"scopes": ["rag:write"]}})
    await rag.call(
        a, "add_document", {"kb": "hr", "content": "Engineers onboard in March.", "doc_id": "public"}
    )
    query = {"kb": "hr", "query": "engineers march", "min_score": 0.0}

    hr = await as_key(rag, a, "key-hr", "search", query)
    assert {h["doc_id"] for h in hr["hits"]} == {"salaries", "editing", "public"}
    other = await as_key(rag, a, "key-other", "search", query)
    assert {h["doc_id"] for h in other["hits"]} == {"editing", "public"}
    reader = await as_key(rag, a, "key-reader", "search", query, ["rag:read", "llm:read"])
    assert {h["doc_id"] for h in reader["hits"]} == {"public"}
    listed = await as_key(rag, a, "key-other", "list_documents", {"kb": "hr"})
    assert [d["doc_id"] for d in listed["documents"]] == ["editing", "public"]
    shown = await as_key(rag, a, "key-hr", "get_document", {"kb": "hr", "doc_id": "salaries"})
    assert shown["visible_to"] == {"keys": ["key-hr"], "scopes": [], "tags": []}
    for tool in ("get_document", "delete_document"):
        try:
            await as_key(rag, a, "key-other", tool, {"kb": "hr", "doc_id": "salaries"})
        except ToolFailed as failed:
            assert failed.error is not None and failed.error.code == ErrorCode.NOT_FOUND
        else:
            raise AssertionError(f"{tool} reached a document the key may not see")
    try:
        await as_key(rag, a, "key-other", "update_document", {**salary, "content": "overwritten"})
    except ToolFailed as failed:
        assert failed.error is not None and failed.error.code == ErrorCode.NOT_FOUND
    else:
        raise AssertionError("update_document reached a document the key may not see")
    bad = await rag.fails(
        a, "add_document", {**salary, "doc_id": "x", "visible_to": {"scopes": ["hr:secret"]}}
    )
    assert bad.error is not None and bad.error.code == ErrorCode.INVALID_REQUEST


async def test_documents_limited_to_key_tags(rag: Rag) -> None:
    a, b = org(), org()
    await rag.call(a, "create_kb", {"kb": "help"})
    runbook = {
        "kb": "help",
        "content": "Refunds: the support desk approves refunds in Zendesk.",
        "doc_id": "runbook",
    }
    await rag.call(a, "add_document", {**runbook, "visible_to": {"tags": ["support", "tier-2"]}})
    faq = {"kb": "help", "content": "Refunds take five days to reach your card.", "doc_id": "faq"}
    await rag.call(a, "add_document", faq)
    query = {"kb": "help", "query": "refunds support desk", "min_score": 0.0}

    support = await as_key(rag, a, "key-s", "search", query, tags=["support"])
    assert {h["doc_id"] for h in support["hits"]} == {"runbook", "faq"}
    tier2 = await as_key(rag, a, "key-t", "search", query, tags=["billing", "tier-2"])  # one tag is enough
    assert {h["doc_id"] for h in tier2["hits"]} == {"runbook", "faq"}
    for tags in (None, ["billing"]):  # no tags, or none of the document's
        plain = await as_key(rag, a, "key-plain", "search", query, tags=tags)
        assert {h["doc_id"] for h in plain["hits"]} == {"faq"}
        listed = await as_key(rag, a, "key-plain", "list_documents", {"kb": "help"}, tags=tags)
        assert [d["doc_id"] for d in listed["documents"]] == ["faq"]
        answered = await as_key(
            rag, a, "key-plain", "answer", {"kb": "help", "question": "refunds support desk"}
        )
        assert {s["doc_id"] for s in answered["sources"]} == {"faq"}
        for tool in ("get_document", "delete_document"):
            await not_found(rag, a, tool, {"kb": "help", "doc_id": "runbook"}, tags)
        await not_found(rag, a, "update_document", {**runbook, "content": "overwritten"}, tags)
    answered = await as_key(
        rag, a, "key-s", "answer", {"kb": "help", "question": "refunds support desk"}, tags=["support"]
    )
    assert "runbook" in {s["doc_id"] for s in answered["sources"]}
    shown = await as_key(
        rag, a, "key-s", "get_document", {"kb": "help", "doc_id": "runbook"}, tags=["support"]
    )
    assert shown["visible_to"] == {"keys": [], "scopes": [], "tags": ["support", "tier-2"]}
    listed = await as_key(rag, a, "key-s", "list_documents", {"kb": "help"}, tags=["support"])
    assert [d["doc_id"] for d in listed["documents"]] == ["faq", "runbook"]

    # Tags are the owner org's labels: a key of another org never matches one through a share.
    await rag.call(a, "share_kb", {"kb": "help", "grantee": b})
    shared = await as_key(rag, b, "key-b", "search", {**query, "owner_org": a}, tags=["support"])
    assert {h["doc_id"] for h in shared["hits"]} == {"faq"}

    # The owner org's admin scope sees every document and manages it.
    admin = ["*", "admin"]
    found = await as_key(rag, a, "key-admin", "search", query, admin)
    assert {h["doc_id"] for h in found["hits"]} == {"runbook", "faq"}
    updated = await as_key(
        rag, a, "key-admin", "update_document", {**runbook, "content": "Refunds: ask Lee."}, admin
    )
    assert updated["version"] == 2 and updated["visible_to"] is None  # visible_to left out: everyone
    await as_key(
        rag, a, "key-admin", "update_document", {**runbook, "visible_to": {"tags": ["support"]}}, admin
    )
    assert (await as_key(rag, a, "key-admin", "delete_document", {"kb": "help", "doc_id": "runbook"}, admin))[
        "deleted"
    ] == "runbook"


async def test_bad_visible_to_tags_are_clear_errors(rag: Rag) -> None:
    a = org()
    await rag.call(a, "create_kb", {"kb": "help"})
    doc = {"kb": "help", "content": "Refunds take five days.", "doc_id": "faq"}
    for tags, says in (
        (["Support"], "invalid tag 'Support'"),
        (["a b"], "invalid tag 'a b'"),
        ([f"t{i}" for i in range(17)], "at most 16 tags"),
    ):
        bad = await rag.fails(a, "add_document", {**doc, "visible_to": {"tags": tags}})
        assert bad.error is not None and bad.error.code == ErrorCode.INVALID_REQUEST
        assert says in bad.error.message and "visible_to tags" in bad.error.message
    empty = await rag.fails(a, "add_document", {**doc, "visible_to": {"tags": []}})
    assert empty.error is not None and "visible_to needs 1-32" in empty.error.message
