"""add_documents: many documents into a kb the caller may write (its own, or another org's through
a write grant: the single add's check, `resolve(..., "write")`), as a durable job.

Documents go in groups of at least `RAG_EMBED_BATCH` chunks: each group's chunks, across its
documents, are embedded together (in `llm_embed` calls of `RAG_EMBED_BATCH` texts), then its
documents are committed one by one. Progress is documents done of the total, with `partial` =
{documents_done, chunks_done, failed}; a document that fails (bad type, empty, over a limit,
changed meanwhile) is reported in the result and the others go on. The kb (and the grant) is
checked again for every group: a kb deleted (or made again), or a grant revoked, stops the job
(`KbGone`). Resumable: each document's ingest is idempotent by content hash, and the checkpoint
says where to go on from.
"""

from __future__ import annotations

from typing import Any, NotRequired

from typing_extensions import TypedDict

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.rag.access import Kb, invalid, resolve
from mcpmesh.rag.app import RagApp, iso
from mcpmesh.rag.embedding import embed
from mcpmesh.rag.ingest import KbGone, Prepared, commit, prepare
from mcpmesh.rag.visibility import VisibleTo
from mcpmesh.service import JobContext

#: Failures that would fail every document after this one the same way: they stop the job.
_STOPS = (ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT, ErrorCode.UNAUTHENTICATED)


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


def _failed(index: int, exc: MeshException) -> dict[str, Any]:
    if isinstance(exc, KbGone) or exc.error.code in _STOPS:
        raise exc
    return {"index": index, "error": {"code": exc.error.code, "message": exc.error.message}}


def _done(index: int, added: dict[str, Any]) -> dict[str, Any]:
    keys = ("doc_id", "version", "unchanged", "chunks")
    return {"index": index, **{k: added[k] for k in keys}}


async def _target(app: RagApp, job: JobContext, kb: str, owner_org: str | None, state: dict[str, Any]) -> Kb:
    """The kb, checked now; the same one the job started with (not deleted, or made again)."""
    try:
        target = await resolve(app, job, kb, "write", owner_org)
    except MeshException as exc:
        if "kb_created" in state and exc.error.code in (ErrorCode.NOT_FOUND, ErrorCode.FORBIDDEN):
            raise KbGone(kb) from None
        raise
    created = iso(target.doc.get("created_at"))
    if state.setdefault("kb_created", created) != created:
        raise KbGone(kb)
    return target


async def run(
    app: RagApp, job: JobContext, kb: str, documents: list[DocumentIn], owner_org: str | None
) -> dict[str, Any]:
    check_batch(app, documents)
    state: dict[str, Any] = dict(job.checkpoint or {"next": 0, "chunks": 0, "results": []})
    results: list[dict[str, Any]] = state["results"]
    total = len(documents)
    at = int(state["next"])
    while at < total:
        target = await _target(app, job, kb, owner_org, state)
        group: list[tuple[int, Prepared | dict[str, Any]]] = []
        pending = {"documents": 0, "chunks": 0, "bytes": 0}
        while at < total and pending["chunks"] < app.settings.embed_batch:
            doc = documents[at]
            try:
                prepared = await prepare(
                    app,
                    job,
                    target,
                    content=doc["content"],
                    doc_type=doc.get("type", "text"),
                    title=doc.get("title", ""),
                    doc_id=doc.get("doc_id"),
                    metadata=doc.get("metadata"),
                    visible_to=doc.get("visible_to"),
                    replace=False,
                    pending=pending,
                )
            except MeshException as exc:
                group.append((at, _failed(at, exc)))
            else:
                if isinstance(prepared, Prepared):
                    for what, n in prepared.adds().items():
                        pending[what] += n
                    group.append((at, prepared))
                else:
                    group.append((at, _done(at, prepared)))
            at += 1
        texts = [text for _, p in group if isinstance(p, Prepared) for text in p.texts]
        try:
            vectors = await embed(app, job, texts) if texts else []
        except MeshException as exc:
            failure = _failed(-1, exc)["error"]  # every document of the group fails the same way
            group = [(i, {"index": i, "error": failure} if isinstance(p, Prepared) else p) for i, p in group]
            vectors = []
        used = 0
        for index, item in group:
            if isinstance(item, Prepared):
                mine = vectors[used : used + len(item.chunks)]
                used += len(item.chunks)
                try:
                    added = await commit(app, item, mine, job.started_by)
                except MeshException as exc:
                    entry = _failed(index, exc)
                else:
                    entry = _done(index, added)
                    state["chunks"] += 0 if added["unchanged"] else added["chunks"]
            else:
                entry = item
            results.append(entry)
            state["next"] = index + 1
            failed = sum(1 for r in results if "error" in r)
            await job.save_checkpoint(state)
            await job.progress(
                index + 1,
                total,
                f"{index + 1}/{total} documents, {state['chunks']} chunks",
                partial={"documents_done": index + 1, "chunks_done": state["chunks"], "failed": failed},
            )
    return {
        "kb": kb,
        "owner_org": owner_org or job.org_id,
        "documents": total,
        "chunks_added": state["chunks"],
        "failed": sum(1 for r in results if "error" in r),
        "results": results,
    }
