"""mcp-rag end to end through the gateway, with mcp-llm (offline provider) on the bus: a batch of
200 documents is ingested as a job that embeds through mcp-llm with the job's ticket, reports
documents and chunks done as it goes, and its documents are then found by search; chunks are
embedded across documents in few mcp-llm calls; a job writes only where the single add may; a job
whose kb is deleted under it stops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from mcpmesh.llm import LlmSettings
from mcpmesh.llm import build_service as build_llm
from mcpmesh.rag import RagSettings, batches, build_service
from mcpmesh.rag.app import Caller, RagApp
from mcpmesh.secrets import new_master_key_entry
from mcpmesh.service import ServiceSettings
from tests.gateway.conftest import Gateway, Mesh
from tests.gateway.test_job_hops import tool


async def finished(gw: Gateway, key: str, job_id: str) -> dict[str, Any]:
    for _ in range(600):
        view: dict[str, Any] = (await tool(gw, key, "rag_job_status", {"job_id": job_id}))[
            "structuredContent"
        ]
        if view["status"] not in ("queued", "running"):
            return view
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


@pytest.fixture
async def rag_mesh(mesh: Mesh, tmp_path: Path) -> AsyncIterator[tuple[Mesh, Gateway]]:
    llm_store = ServiceSettings(
        mongodb_url=mesh.mongo_url,
        mongodb_database=mesh.database + "_llm",
        secrets_keys=new_master_key_entry("t1"),
    )
    await mesh.service(build_llm(LlmSettings()), llm_store)
    rag_store = ServiceSettings(
        mongodb_url=mesh.mongo_url, mongodb_database=mesh.database + "_rag", qdrant_path=str(tmp_path / "q")
    )
    await mesh.service(
        build_service(RagSettings(chunk_tokens=40, chunk_overlap=8, embed_batch=16)), rag_store
    )
    gw = await mesh.gateway()
    await mesh.wait_discovered("llm", "rag")
    yield mesh, gw


async def test_a_batch_of_200_documents_is_ingested_as_a_job_with_progress(rag_mesh: Any) -> None:
    mesh, gw = rag_mesh
    _org, key = await mesh.tenant(scopes=["rag:read", "rag:write", "llm:read"])
    created = await tool(gw, key, "rag_create_kb", {"kb": "faq"})
    assert created["isError"] is False, created
    documents = [
        {"content": f"Question {i}: item code QX{i:04d} ships from depot {i % 7}.", "doc_id": f"q{i}"}
        for i in range(200)
    ]
    documents.append({"content": "   ", "doc_id": "empty"})
    started = (await tool(gw, key, "rag_add_documents", {"kb": "faq", "documents": documents}))[
        "structuredContent"
    ]
    seen: list[dict[str, Any]] = []
    for _ in range(600):
        view = (await tool(gw, key, "rag_job_status", {"job_id": started["job_id"]}))["structuredContent"]
        if view.get("partial"):
            seen.append(view["partial"])
        if view["status"] not in ("queued", "running"):
            break
        await asyncio.sleep(0.05)
    assert view["status"] == "succeeded", view
    assert view["progress"] == view["total"] == 201
    result = (await tool(gw, key, "rag_job_result", {"job_id": started["job_id"]}))["structuredContent"]
    assert result["documents"] == 201 and result["failed"] == 1 and result["chunks_added"] == 200
    assert result["results"][-1]["error"]["code"] == "invalid_request"
    done = [p["documents_done"] for p in seen]
    assert done == sorted(done) and done[-1] == 201
    found = (await tool(gw, key, "rag_search", {"kb": "faq", "query": "QX0123"}))["structuredContent"]
    assert found["hits"][0]["doc_id"] == "q123"


async def test_a_batch_job_can_be_cancelled_and_keeps_what_it_finished(rag_mesh: Any) -> None:
    mesh, gw = rag_mesh
    _org, key = await mesh.tenant(scopes=["rag:read", "rag:write", "llm:read"])
    await tool(gw, key, "rag_create_kb", {"kb": "faq"})
    documents = [{"content": f"Entry {i} about topic {i}."} for i in range(200)]
    started = (await tool(gw, key, "rag_add_documents", {"kb": "faq", "documents": documents}))[
        "structuredContent"
    ]
    job = {"job_id": started["job_id"]}
    for _ in range(400):  # wait for the first document to be done
        view = (await tool(gw, key, "rag_job_status", job))["structuredContent"]
        if (view.get("partial") or {}).get("documents_done"):
            break
        await asyncio.sleep(0.05)
    cancelled = (await tool(gw, key, "rag_job_cancel", job))["structuredContent"]
    assert cancelled["status"] == "cancelled"
    done = (await tool(gw, key, "rag_job_status", job))["structuredContent"]["partial"]["documents_done"]
    kb = (await tool(gw, key, "rag_get_kb", {"kb": "faq"}))["structuredContent"]
    # What it finished stays (a document in flight at the cancel may still land); the rest never ran.
    assert 1 <= done <= kb["documents"] < 200


async def test_a_batch_job_into_a_kb_deleted_under_it_stops_failed(
    rag_mesh: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    mesh, gw = rag_mesh
    org_id, key = await mesh.tenant(scopes=["rag:read", "rag:write", "llm:read"])
    await tool(gw, key, "rag_create_kb", {"kb": "faq"})
    real = batches.embed
    second, gate = asyncio.Event(), asyncio.Event()
    calls = 0

    async def held(app: RagApp, caller: Caller, texts: Sequence[str]) -> list[list[float]]:
        nonlocal calls
        calls += 1
        if calls == 2:  # the second embedding waits while the kb is deleted
            second.set()
            await gate.wait()
        return await real(app, caller, texts)

    monkeypatch.setattr(batches, "embed", held)
    documents = [{"content": f"Entry {i} about topic {i}.", "doc_id": f"e{i}"} for i in range(20)]
    started = (await tool(gw, key, "rag_add_documents", {"kb": "faq", "documents": documents}))[
        "structuredContent"
    ]
    await asyncio.wait_for(second.wait(), 30)
    deleted = await tool(gw, key, "rag_delete_kb", {"kb": "faq"})
    assert deleted["isError"] is False, deleted
    gate.set()
    view = await finished(gw, key, started["job_id"])
    assert view["status"] == "failed", view
    assert view["error"]["code"] == "not_found" and "was deleted" in view["error"]["message"]
    assert 1 <= view["partial"]["documents_done"] < 20
    rag = mesh.harnesses["rag"].service  # nothing written after the delete: no collection, no record
    assert await rag.vectors.for_tenant(org_id).list_kbs() == []
    assert await (await rag.store.for_tenant(org_id).collection("documents")).count_documents({}) == 0


async def _job(gw: Gateway, key: str, args: dict[str, Any]) -> dict[str, Any]:
    started = (await tool(gw, key, "rag_add_documents", args))["structuredContent"]
    return await finished(gw, key, started["job_id"])


async def test_a_batch_embeds_chunks_across_documents_in_few_calls(rag_mesh: Any) -> None:
    mesh, gw = rag_mesh
    _org, key = await mesh.tenant(scopes=["rag:read", "rag:write", "llm:read"])
    await tool(gw, key, "rag_create_kb", {"kb": "faq"})
    # 40 one-chunk documents, RAG_EMBED_BATCH 16: 3 llm_embed calls (16 + 16 + 8), not 40.
    documents = [{"content": f"Answer {i}: part PX-{i:03d} fits model {i % 5}."} for i in range(40)]
    documents[7] = {"content": "<p>broken", "type": "nope"}  # fails alone, the others go on
    view = await _job(gw, key, {"kb": "faq", "documents": documents})
    assert view["status"] == "succeeded", view
    assert view["partial"] == {"documents_done": 40, "chunks_done": 39, "failed": 1}
    usage = (await tool(gw, key, "llm_usage", {}))["structuredContent"]
    assert usage["totals"]["calls"] == 3, usage  # the job's embed calls, and nothing else of this org
    result = (await tool(gw, key, "rag_job_result", {"job_id": view["job_id"]}))["structuredContent"]
    assert [r["index"] for r in result["results"]] == list(range(40))  # per document, in order
    assert result["results"][7]["error"]["code"] == "invalid_request"
    found = (await tool(gw, key, "rag_search", {"kb": "faq", "query": "PX-033"}))["structuredContent"]
    assert found["hits"][0]["text"].startswith("Answer 33:")


async def test_a_batch_writes_only_where_a_single_add_may(rag_mesh: Any) -> None:
    mesh, gw = rag_mesh
    owner, owner_key = await mesh.tenant(scopes=["rag:read", "rag:write", "llm:read"], name="Owner")
    other, other_key = await mesh.tenant(scopes=["rag:read", "rag:write", "llm:read"], name="Other")
    for kb in ("team", "wiki"):
        await tool(gw, owner_key, "rag_create_kb", {"kb": kb})
    docs = {"documents": [{"content": "Written by the other org."}]}
    # No grant: the owner's kb is not found (by name alone the other org only reaches its own).
    for args in ({"kb": "team"}, {"kb": "team", "owner_org": owner}):
        view = await _job(gw, other_key, {**args, **docs})
        assert (view["status"], view["error"]["code"]) == ("failed", "not_found"), view
    await tool(gw, owner_key, "rag_share_kb", {"kb": "team", "grantee": other, "access": "read"})
    view = await _job(gw, other_key, {"kb": "team", "owner_org": owner, **docs})
    assert (view["status"], view["error"]["code"]) == ("failed", "forbidden"), view
    assert "read-only" in view["error"]["message"]
    await tool(gw, owner_key, "rag_share_kb", {"kb": "wiki", "grantee": other, "access": "write"})
    view = await _job(gw, other_key, {"kb": "wiki", "owner_org": owner, **docs})
    assert view["status"] == "succeeded" and view["partial"]["documents_done"] == 1, view
    listed = (await tool(gw, owner_key, "rag_list_documents", {"kb": "wiki"}))["structuredContent"]
    assert [d["title"] for d in listed["documents"]] == ["Written by the other org."]
    team = (await tool(gw, owner_key, "rag_get_kb", {"kb": "team"}))["structuredContent"]
    assert team["documents"] == 0
    await tool(gw, owner_key, "rag_revoke_kb_share", {"kb": "wiki", "grantee": other})
    view = await _job(gw, other_key, {"kb": "wiki", "owner_org": owner, **docs})
    assert (view["status"], view["error"]["code"]) == ("failed", "not_found"), view
