"""Key tags end to end: a key created with tags through the admin API reaches mcp-rag with them
in its stamp, where a document limited to a tag is found with a key carrying it and not with an
untagged key of the same org."""

from __future__ import annotations

from typing import Any

from tests.gateway.test_job_hops import tool
from tests.gateway.test_rag import rag_mesh

__all__ = ["rag_mesh"]  # the fixture, shared with test_rag

RAG = ["rag:read", "rag:write", "llm:read"]


async def test_a_document_limited_to_a_tag_is_found_only_with_a_key_carrying_it(rag_mesh: Any) -> None:
    mesh, gw = rag_mesh
    org, untagged = await mesh.tenant(scopes=RAG)
    tagged = await mesh.key(org, scopes=RAG, tags=["support"])
    assert tagged["tags"] == ["support"]
    assert (await tool(gw, untagged, "rag_create_kb", {"kb": "help"}))["isError"] is False
    runbook = {
        "kb": "help",
        "doc_id": "runbook",
        "content": "Escalations: page the on-call engineer through PagerDuty.",
        "visible_to": {"tags": ["support"]},
    }
    added = await tool(gw, untagged, "rag_add_document", runbook)
    assert added["isError"] is False, added
    query = {"kb": "help", "query": "escalations on-call PagerDuty", "min_score": 0.0}

    found = (await tool(gw, tagged["secret"], "rag_search", query))["structuredContent"]
    assert [h["doc_id"] for h in found["hits"]] == ["runbook"]
    shown = await tool(gw, tagged["secret"], "rag_get_document", {"kb": "help", "doc_id": "runbook"})
    assert shown["structuredContent"]["visible_to"]["tags"] == ["support"]

    missed = (await tool(gw, untagged, "rag_search", query))["structuredContent"]
    assert missed["hits"] == []
    hidden = await tool(gw, untagged, "rag_get_document", {"kb": "help", "doc_id": "runbook"})
    assert hidden["isError"] is True and hidden["structuredContent"]["code"] == "not_found"
