"""Documents: add (idempotent by content hash), update (a new version), get, list, delete.

A document is `<owner>__documents` {_id: "<kb>/<doc_id>", kb, doc_id, title, type, hash,
version, bytes, chunks, text, metadata, versions: [{version, hash, bytes, chunks, created_at,
created_by}], created_at, updated_at}. Only the current version is indexed: its chunks are
the points `point_id_for("<kb>/<doc_id>/<version>/<chunk>")`, written before the record, and
the previous version's points are deleted after it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from typing import Any, Final

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.rag import sparse
from mcpmesh.rag.access import Kb, invalid, resolve
from mcpmesh.rag.app import Caller, RagApp, iso, utcnow
from mcpmesh.rag.chunking import Chunk, chunk
from mcpmesh.rag.embedding import embed
from mcpmesh.rag.extract import check_type, extract
from mcpmesh.rag.kbs import check_room
from mcpmesh.rag.visibility import EVERYONE, VisibleTo, acl_of, mongo_filter, sees, visible_to_view
from mcpmesh.service import Call
from mcpmesh.vectors import HybridPoint, point_id_for

_DOC_ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
MAX_METADATA_KEYS: Final = 32


def check_doc_id(value: str) -> str:
    if not _DOC_ID_RE.fullmatch(value):
        raise invalid(
            f"invalid doc_id {value[:60]!r}: 1-100 letters, digits, '_', '.', ':' or '-', starting with a "
            "letter or digit"
        )
    return value


def check_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """Flat metadata for filters: string keys, values strings, numbers, booleans or lists of strings."""
    metadata = metadata or {}
    if len(metadata) > MAX_METADATA_KEYS:
        raise invalid(f"metadata holds at most {MAX_METADATA_KEYS} keys")
    for key, value in metadata.items():
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", key):
            raise invalid(f"metadata key {key[:40]!r}: use 1-40 lowercase letters, digits or '_'")
        ok = isinstance(value, str | int | float | bool) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        )
        if not ok:
            raise invalid(f"metadata {key!r}: expected a string, number, boolean or list of strings")
    return metadata


def point_ids(kb: str, doc_id: str, version: int, chunks: int) -> list[str]:
    return [point_id_for(f"{kb}/{doc_id}/{version}/{i}") for i in range(chunks)]


def doc_view(doc: dict[str, Any], kb: Kb, *, text: bool = False) -> dict[str, Any]:
    view = {
        "kb": kb.name,
        "doc_id": doc["doc_id"],
        "title": doc.get("title", ""),
        "type": doc.get("type"),
        "version": doc.get("version"),
        "hash": doc.get("hash"),
        "bytes": doc.get("bytes"),
        "chunks": doc.get("chunks"),
        "metadata": doc.get("metadata", {}),
        "visible_to": visible_to_view(doc.get("acl", [EVERYONE])),
        "owner_org": kb.owner,
        "created_at": iso(doc.get("created_at")),
        "updated_at": iso(doc.get("updated_at")),
        "versions": [{**v, "created_at": iso(v.get("created_at"))} for v in doc.get("versions", [])],
    }
    if text:
        view["text"] = doc.get("text", "")
    return view


async def ingest(
    app: RagApp,
    caller: Caller,
    kb: Kb,
    *,
    by: str,
    content: str,
    doc_type: str,
    title: str,
    doc_id: str | None,
    metadata: dict[str, Any] | None,
    replace: bool,
    visible_to: VisibleTo | None = None,
    sees: Callable[[dict[str, Any]], bool] = lambda doc: True,
    on_chunks: Callable[[int], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """Add a document (replace=False) or a new version of one (replace=True) to `kb`.

    The same content again (same hash) changes nothing and answers `unchanged: true`."""
    kind = check_type(doc_type)
    size = len(content.encode())
    if size > app.settings.max_document_bytes:
        raise MeshException(
            ErrorCode.LIMIT_EXCEEDED,
            f"the document is {size} bytes, over the {app.settings.max_document_bytes}-byte limit on one "
            "document (RAG_MAX_DOCUMENT_BYTES): split it",
        )
    meta = check_metadata(metadata)
    acl = acl_of(visible_to)
    extracted = extract(content, kind)
    digest = hashlib.sha256(f"{kind}\n{content}".encode()).hexdigest()
    doc_id = check_doc_id(doc_id) if doc_id is not None else f"doc-{digest[:16]}"
    title = title.strip()[:200] or _first_line(extracted.text)
    documents = await kb.store.collection("documents")
    key = f"{kb.name}/{doc_id}"
    current = await documents.find_one({"_id": key})
    if current is not None and not sees(current):
        if replace:
            raise MeshException(ErrorCode.NOT_FOUND, f"document {doc_id!r} not found in {kb.name!r}")
        raise MeshException(ErrorCode.CONFLICT, f"doc_id {doc_id!r} is taken in {kb.name!r}: choose another")
    if current is not None and current.get("hash") == digest and current.get("acl") == acl:
        return {**doc_view(current, kb), "unchanged": True}
    if current is not None and not replace:
        raise MeshException(
            ErrorCode.CONFLICT,
            f"document {doc_id!r} exists with other content: use rag_update_document for a new version",
        )
    if current is None and replace:
        raise MeshException(ErrorCode.NOT_FOUND, f"document {doc_id!r} not found in {kb.name!r}")
    chunks = chunk(extracted, app.settings.chunk_tokens, app.settings.chunk_overlap)
    old_chunks = int(current.get("chunks", 0)) if current else 0
    old_bytes = int(current.get("bytes", 0)) if current else 0
    await check_room(
        app,
        caller,
        kb,
        documents=0 if current else 1,
        chunks=max(0, len(chunks) - old_chunks),
        bytes=max(0, size - old_bytes),
    )
    version = int(current["version"]) + 1 if current else 1
    await _index(app, caller, kb, doc_id, version, title, {"meta": meta, "acl": acl}, chunks, on_chunks)
    now = utcnow()
    record = {
        "version": version,
        "hash": digest,
        "bytes": size,
        "chunks": len(chunks),
        "created_at": now,
        "created_by": by,
    }
    fields = {
        "title": title,
        "type": kind,
        "hash": digest,
        "version": version,
        "bytes": size,
        "chunks": len(chunks),
        "text": extracted.text,
        "metadata": meta,
        "acl": acl,
        "updated_at": now,
    }
    if current is None:
        doc = {"_id": key, "kb": kb.name, "doc_id": doc_id, "created_at": now, "versions": [record], **fields}
        await documents.insert_one(doc)
    else:
        await documents.update_one({"_id": key}, {"$set": fields, "$push": {"versions": record}})
        await kb.vectors.delete_points(
            kb.name, point_ids(kb.name, doc_id, int(current["version"]), old_chunks)
        )
        doc = {**current, **fields, "versions": [*current.get("versions", []), record]}
    await (await kb.store.collection("kbs")).update_one(
        {"_id": kb.name},
        {
            "$inc": {
                "documents": 0 if current else 1,
                "chunks": len(chunks) - old_chunks,
                "bytes": size - old_bytes,
            }
        },
    )
    return {**doc_view(doc, kb), "unchanged": False}


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0][:200]


async def _index(
    app: RagApp,
    caller: Caller,
    kb: Kb,
    doc_id: str,
    version: int,
    title: str,
    extra: dict[str, Any],
    chunks: list[Chunk],
    on_chunks: Callable[[int], Awaitable[None]] | None,
) -> None:
    texts = [f"{title}\n{c.section}\n{c.text}" if c.section else f"{title}\n{c.text}" for c in chunks]
    vectors = await embed(app, caller, texts, on_chunks)
    await kb.vectors.ensure_hybrid_kb(kb.name, len(vectors[0]))
    ids = point_ids(kb.name, doc_id, version, len(chunks))
    points = [
        HybridPoint(
            id=ids[c.index],
            dense=vector,
            sparse=sparse.document_vector(text, app.settings.chunk_tokens),
            payload={
                "doc": doc_id,
                "version": version,
                "title": title,
                "section": c.section,
                "chunk": c.index,
                "chunks": len(chunks),
                "start": c.start,
                "end": c.end,
                "text": c.text,
                **extra,
            },
        )
        for c, vector, text in zip(chunks, vectors, texts, strict=True)
    ]
    await kb.vectors.upsert(kb.name, points)


async def add(app: RagApp, call: Call, kb: str, owner_org: str | None, **fields: Any) -> dict[str, Any]:
    target = await resolve(app, call, kb, "write", owner_org)
    return await ingest(
        app, call, target, by=call.stamp.sub, replace=False, sees=sees(call, target), **fields
    )


async def update(app: RagApp, call: Call, kb: str, owner_org: str | None, **fields: Any) -> dict[str, Any]:
    target = await resolve(app, call, kb, "write", owner_org)
    return await ingest(app, call, target, by=call.stamp.sub, replace=True, sees=sees(call, target), **fields)


async def get(app: RagApp, call: Call, kb: str, doc_id: str, owner_org: str | None) -> dict[str, Any]:
    target = await resolve(app, call, kb, "read", owner_org)
    documents = await target.store.collection("documents")
    doc = await documents.find_one({"_id": f"{kb}/{check_doc_id(doc_id)}", **mongo_filter(call, target)})
    if doc is None:
        raise MeshException(ErrorCode.NOT_FOUND, f"document {doc_id!r} not found in {kb!r}")
    return doc_view(doc, target, text=True)


async def list_documents(
    app: RagApp, call: Call, kb: str, limit: int, after: str | None, owner_org: str | None
) -> dict[str, Any]:
    if not 1 <= limit <= 100:
        raise invalid("limit must be between 1 and 100")
    target = await resolve(app, call, kb, "read", owner_org)
    query: dict[str, Any] = {"kb": target.name, **mongo_filter(call, target)}
    if after is not None:
        query["doc_id"] = {"$gt": check_doc_id(after)}
    documents = await target.store.collection("documents")
    docs = await documents.find(query, {"text": 0}).sort("doc_id", 1).limit(limit + 1).to_list(None)
    more = len(docs) > limit
    docs = docs[:limit]
    return {
        "documents": [doc_view(d, target) for d in docs],
        "next_after": docs[-1]["doc_id"] if more else None,
    }


async def delete(app: RagApp, call: Call, kb: str, doc_id: str, owner_org: str | None) -> dict[str, Any]:
    target = await resolve(app, call, kb, "write", owner_org)
    documents = await target.store.collection("documents")
    doc = await documents.find_one_and_delete(
        {"_id": f"{target.name}/{check_doc_id(doc_id)}", **mongo_filter(call, target)}
    )
    if doc is None:
        raise MeshException(ErrorCode.NOT_FOUND, f"document {doc_id!r} not found in {kb!r}")
    await target.vectors.delete_where(target.name, {"doc": doc_id})
    await (await target.store.collection("kbs")).update_one(
        {"_id": target.name},
        {"$inc": {"documents": -1, "chunks": -int(doc.get("chunks", 0)), "bytes": -int(doc.get("bytes", 0))}},
    )
    return {"deleted": doc_id, "kb": target.name, "chunks": doc.get("chunks", 0)}
