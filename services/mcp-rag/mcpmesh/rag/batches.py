"""add_documents: many documents into one of the org's own kbs, as a durable job.

Progress is documents done of the total, with `partial` = {documents_done, chunks_done,
failed}; a document that fails (bad type, empty, over a limit) is reported in the result and
the others go on. Resumable: each document's ingest is idempotent by content hash, and the
checkpoint says where to go on from.
"""

from __future__ import annotations

from typing import Any, NotRequired

from typing_extensions import TypedDict

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.rag.access import Kb, check_kb, invalid, kb_doc, not_found
from mcpmesh.rag.app import RagApp
from mcpmesh.rag.ingest import KbGone, ingest
from mcpmesh.rag.visibility import VisibleTo
from mcpmesh.service import JobContext


class DocumentIn(TypedDict):
    content: str
    type: NotRequired[str]
    title: NotRequired[str]
    doc_id: NotRequired[str | None]
    metadata: NotRequired[dict[str, Any] | None]
    visible_to: NotRequired[VisibleTo | None]


def check_batch(app: RagApp, documents: list[DocumentIn]) -> None:
    if not 1 <= len(documents) <= app.settings.max_batch_documents:
        raise invalid(f"send 1-{app.settings.max_batch_documents} documents (RAG_MAX_BATCH_DOCUMENTS)")


async def run(app: RagApp, job: JobContext, kb: str, documents: list[DocumentIn]) -> dict[str, Any]:
    check_batch(app, documents)
    name = check_kb(kb)
    doc = await kb_doc(job.store, name)
    if doc is None:
        raise not_found(name)
    target = Kb(name, doc, job.store, job.vectors, "owner")
    state: dict[str, Any] = dict(job.checkpoint or {"next": 0, "chunks": 0, "results": []})
    results: list[dict[str, Any]] = state["results"]
    total = len(documents)
    for i in range(int(state["next"]), total):
        item = documents[i]
        try:
            added = await ingest(
                app,
                job,
                target,
                by=job.started_by,
                content=item["content"],
                doc_type=item.get("type", "text"),
                title=item.get("title", ""),
                doc_id=item.get("doc_id"),
                metadata=item.get("metadata"),
                visible_to=item.get("visible_to"),
                replace=False,
            )
            state["chunks"] += 0 if added["unchanged"] else added["chunks"]
            results.append(
                {
                    "index": i,
                    "doc_id": added["doc_id"],
                    "version": added["version"],
                    "unchanged": added["unchanged"],
                    "chunks": added["chunks"],
                }
            )
        except KbGone:
            raise  # the kb was deleted: the job stops (and fails saying so)
        except MeshException as exc:
            if exc.error.code in (ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT, ErrorCode.UNAUTHENTICATED):
                raise  # mcp-llm or the key is gone: the rest would fail the same way
            results.append({"index": i, "error": {"code": exc.error.code, "message": exc.error.message}})
        state["next"] = i + 1
        failed = sum(1 for r in results if "error" in r)
        await job.save_checkpoint(state)
        await job.progress(
            i + 1,
            total,
            f"{i + 1}/{total} documents, {state['chunks']} chunks",
            partial={"documents_done": i + 1, "chunks_done": state["chunks"], "failed": failed},
        )
    return {
        "kb": name,
        "documents": total,
        "chunks_added": state["chunks"],
        "failed": sum(1 for r in results if "error" in r),
        "results": results,
    }
