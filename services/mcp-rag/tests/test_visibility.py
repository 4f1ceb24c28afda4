"""Per-document access control: a document limited to some keys or scopes is invisible (not
found) to the org's other keys in search, answer, get, list and delete."""

from __future__ import annotations

from typing import Any

from mcpmesh.proto.errors import ErrorCode
from mcpmesh.rag.testing import RW, Rag, org
from mcpmesh.service.testing import ToolFailed


async def as_key(
    rag: Rag, org_id: str, sub: str, tool: str, args: dict[str, Any], scopes: list[str] = RW
) -> Any:
    return await rag.harness.call_tool(org_id, tool, args, stamp=rag.harness.stamp(org_id, scopes, sub=sub))


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
    assert shown["visible_to"] == {"keys": ["key-hr"], "scopes": []}
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
