"""Adding documents and versions: prepare (extract, chunk, check), embed (mcp-llm), commit.

Only a document's current version is indexed. Its chunks are the points
`point_id_for("<seed>/<chunk>")`, seed = "<kb>/<doc_id>/<version>/<write digest>" (the digest of
everything the points hold: content hash, title, metadata, visibility), written before the
document record; the previous version's points are deleted after it. Writes that race never
corrupt each other: the record is inserted (a new document) or updated on the version it was
read at (a new version), so one write wins; the other gives way — `unchanged` when the winner
wrote the same document, else `conflict` — and deletes its own points, which have ids of their
own unless the two writes were identical. A kb deleted while a write is under way (`KbGone`)
is noticed before the write and after it; what the write made is then removed again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pymongo.errors import DuplicateKeyError

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.rag import sparse
from mcpmesh.rag.access import Kb, invalid, kb_doc, resolve
from mcpmesh.rag.app import Caller, RagApp, utcnow
from mcpmesh.rag.chunking import Chunk, chunk
from mcpmesh.rag.documents import check_doc_id, doc_view
from mcpmesh.rag.embedding import embed
from mcpmesh.rag.extract import DocType, check_type, document_bytes, extract
from mcpmesh.rag.kbs import check_room
from mcpmesh.rag.urls import fetch_document, kept_url
from mcpmesh.rag.visibility import VisibleTo, acl_of, sees
from mcpmesh.service import Call
from mcpmesh.vectors import HybridPoint, point_id_for

MAX_METADATA_KEYS: Final = 32


class KbGone(MeshException):
    """The kb was deleted while documents were being added to it."""

    def __init__(self, kb: str) -> None:
        super().__init__(
            ErrorCode.NOT_FOUND,
            f"knowledge base {kb!r} was deleted (or your access to it ended) while documents were being "
            "added to it: nothing more is added",
        )


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


def check_size(app: RagApp, size: int, what: str) -> None:
    if size > app.settings.max_document_bytes:
        raise MeshException(
            ErrorCode.LIMIT_EXCEEDED,
            f"the {what} is {size} bytes, over the {app.settings.max_document_bytes}-byte limit on one "
            "document (RAG_MAX_DOCUMENT_BYTES): split it",
        )


@dataclass(frozen=True)
class Prepared:
    """A document (or version) checked, extracted and chunked, ready to embed and commit."""

    kb: Kb
    doc_id: str
    kind: DocType
    digest: str
    size: int
    title: str
    meta: dict[str, Any]
    acl: list[str]
    url: str | None
    text: str
    chunks: list[Chunk]
    current: dict[str, Any] | None
    version: int
    seed: str

    @property
    def key(self) -> str:
        return f"{self.kb.name}/{self.doc_id}"

    @property
    def texts(self) -> list[str]:
        """What is embedded for each chunk: the title and heading path give it context."""
        title = self.title
        return [f"{title}\n{c.section}\n{c.text}" if c.section else f"{title}\n{c.text}" for c in self.chunks]

    @property
    def ids(self) -> list[str]:
        return [point_id_for(f"{self.seed}/{c.index}") for c in self.chunks]

    def adds(self) -> dict[str, int]:
        """What the kb's counters gain (a new version: the difference to the current one)."""
        old = self.current or {}
        return {
            "documents": 0 if self.current else 1,
            "chunks": len(self.chunks) - int(old.get("chunks", 0)),
            "bytes": self.size - int(old.get("bytes", 0)),
        }


async def prepare(
    app: RagApp,
    caller: Caller,
    kb: Kb,
    *,
    content: str | bytes,
    doc_type: str,
    title: str,
    doc_id: str | None,
    metadata: dict[str, Any] | None,
    replace: bool,
    url: str | None = None,
    visible_to: VisibleTo | None = None,
    sees: Callable[[dict[str, Any]], bool] = lambda doc: True,
    pending: Mapping[str, int] | None = None,
) -> Prepared | dict[str, Any]:
    """A document to add (replace=False) or a new version of one (replace=True) to `kb`, or,
    when the kb holds this very document already, its view with `unchanged: true`.

    `content` is a tool's (text; a PDF base64-encoded) or, as bytes, the document itself (one
    fetched from `url`). `pending`: what a batch prepared before this and has not committed yet
    (counted against the tier's limits)."""
    kind = check_type(doc_type)
    data = content if isinstance(content, bytes) else document_bytes(content, kind)
    check_size(app, len(data), "document")
    meta = check_metadata(metadata)
    acl = acl_of(visible_to)
    extracted = await asyncio.to_thread(extract, data, kind)  # a large PDF takes a while: off the loop
    check_size(app, len(extracted.text.encode()), "document's text")
    digest = hashlib.sha256(f"{kind}\n".encode() + data).hexdigest()
    doc_id = check_doc_id(doc_id) if doc_id is not None else f"doc-{digest[:16]}"
    title = title.strip()[:200] or _first_line(extracted.text)
    current = await (await kb.store.collection("documents")).find_one({"_id": f"{kb.name}/{doc_id}"})
    if current is not None and not sees(current):
        if replace:
            raise MeshException(ErrorCode.NOT_FOUND, f"document {doc_id!r} not found in {kb.name!r}")
        raise MeshException(ErrorCode.CONFLICT, f"doc_id {doc_id!r} is taken in {kb.name!r}: choose another")
    if current is not None and _same(current, digest, acl):
        return {**doc_view(current, kb), "unchanged": True}
    if current is not None and not replace:
        raise MeshException(
            ErrorCode.CONFLICT,
            f"document {doc_id!r} exists with other content: use rag_update_document for a new version",
        )
    if current is None and replace:
        raise MeshException(ErrorCode.NOT_FOUND, f"document {doc_id!r} not found in {kb.name!r}")
    version = int(current["version"]) + 1 if current else 1
    written = json.dumps([digest, title, meta, acl, url], sort_keys=True, default=str)
    prepared = Prepared(
        kb=kb,
        doc_id=doc_id,
        kind=kind,
        digest=digest,
        size=len(data),
        title=title,
        meta=meta,
        acl=acl,
        url=url,
        text=extracted.text,
        chunks=chunk(extracted, app.settings.chunk_tokens, app.settings.chunk_overlap),
        current=current,
        version=version,
        seed=f"{kb.name}/{doc_id}/{version}/{hashlib.sha256(written.encode()).hexdigest()[:24]}",
    )
    adding = {what: max(0, n) + (pending or {}).get(what, 0) for what, n in prepared.adds().items()}
    await check_room(app, caller, kb, **adding)
    return prepared


async def commit(app: RagApp, prepared: Prepared, vectors: list[list[float]], by: str) -> dict[str, Any]:
    """Index `prepared` with its chunks' `vectors`, then record it (see the module's docstring)."""
    kb = prepared.kb
    if not await _alive(kb):
        raise KbGone(kb.name)  # before anything is written: its collection is not made again
    await kb.vectors.ensure_hybrid_kb(kb.name, len(vectors[0]))
    await kb.vectors.upsert(kb.name, _points(app, prepared, vectors))
    now = utcnow()
    record = {
        "version": prepared.version,
        "hash": prepared.digest,
        "bytes": prepared.size,
        "chunks": len(prepared.chunks),
        "created_at": now,
        "created_by": by,
    }
    fields = {
        "title": prepared.title,
        "type": prepared.kind,
        "hash": prepared.digest,
        "seed": prepared.seed,
        "version": prepared.version,
        "bytes": prepared.size,
        "chunks": len(prepared.chunks),
        "text": prepared.text,
        "metadata": prepared.meta,
        "acl": prepared.acl,
        "url": prepared.url,
        "updated_at": now,
    }
    documents = await kb.store.collection("documents")
    current = prepared.current
    if current is None:
        doc = {"_id": prepared.key, "kb": kb.name, "doc_id": prepared.doc_id, "created_at": now}
        doc.update(versions=[record], **fields)
        try:
            await documents.insert_one(doc)
        except DuplicateKeyError:
            return await _give_way(prepared)
    else:
        written = await documents.update_one(
            {"_id": prepared.key, "version": current["version"]},
            {"$set": fields, "$push": {"versions": record}},
        )
        if written.matched_count == 0:
            return await _give_way(prepared)
        doc = {**current, **fields, "versions": [*current.get("versions", []), record]}
    if not await _alive(kb):  # deleted while this was written: take it away again
        await documents.delete_one({"_id": prepared.key, "seed": prepared.seed})
        now_there = await kb_doc(kb.store, kb.name)
        if now_there is None or now_there.get("deleting"):
            await kb.vectors.drop_kb(kb.name)  # the kb is gone or going: its collection is garbage
        else:
            await kb.vectors.delete_points(kb.name, prepared.ids)  # a new kb of that name: ours only
        raise KbGone(kb.name)
    kbs = await kb.store.collection("kbs")
    await kbs.update_one({"_id": kb.name, "created_at": kb.doc["created_at"]}, {"$inc": prepared.adds()})
    if current is not None:
        await kb.vectors.delete_where(kb.name, {"doc": prepared.doc_id, "version": int(current["version"])})
    return {**doc_view(doc, kb), "unchanged": False}


async def ingest(app: RagApp, caller: Caller, kb: Kb, *, by: str, **fields: Any) -> dict[str, Any]:
    """prepare, embed, commit one document (`fields`: prepare's)."""
    prepared = await prepare(app, caller, kb, **fields)
    if not isinstance(prepared, Prepared):
        return prepared
    return await commit(app, prepared, await embed(app, caller, prepared.texts), by)


def _same(doc: dict[str, Any], digest: str, acl: list[str]) -> bool:
    return doc.get("hash") == digest and doc.get("acl") == acl


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0][:200]


async def _alive(kb: Kb) -> bool:
    """The kb this write resolved still exists: the same one (not deleted and made again), and
    not being deleted (kbs.delete marks it first)."""
    record = await kb_doc(kb.store, kb.name)
    if record is None or record.get("deleting"):
        return False
    return bool(record.get("created_at") == kb.doc.get("created_at"))


async def _give_way(prepared: Prepared) -> dict[str, Any]:
    """Another write of this document won the race: leave its points, drop ours."""
    kb = prepared.kb
    winner = await (await kb.store.collection("documents")).find_one({"_id": prepared.key})
    if winner is None or winner.get("seed") != prepared.seed:
        await kb.vectors.delete_points(kb.name, prepared.ids)
    if winner is not None and _same(winner, prepared.digest, prepared.acl):
        return {**doc_view(winner, kb), "unchanged": True}
    raise MeshException(
        ErrorCode.CONFLICT,
        f"document {prepared.doc_id!r} was changed by another call meanwhile: get it and try again",
    )


def _points(app: RagApp, prepared: Prepared, vectors: list[list[float]]) -> list[HybridPoint]:
    chunks = prepared.chunks
    extra = {"meta": prepared.meta, "acl": prepared.acl}
    return [
        HybridPoint(
            id=point_id,
            dense=vector,
            sparse=sparse.document_vector(text, app.settings.chunk_tokens),
            payload={
                "doc": prepared.doc_id,
                "version": prepared.version,
                "title": prepared.title,
                "section": c.section,
                "chunk": c.index,
                "chunks": len(chunks),
                "start": c.start,
                "end": c.end,
                "pages": list(c.pages) if c.pages else None,
                "text": c.text,
                **extra,
            },
        )
        for c, vector, text, point_id in zip(chunks, vectors, prepared.texts, prepared.ids, strict=True)
    ]


async def add(app: RagApp, call: Call, kb: str, owner_org: str | None, **fields: Any) -> dict[str, Any]:
    target = await resolve(app, call, kb, "write", owner_org)
    return await ingest(
        app, call, target, by=call.stamp.sub, replace=False, sees=sees(call, target), **fields
    )


async def add_url(
    app: RagApp, call: Call, kb: str, owner_org: str | None, url: str, doc_type: str | None, **fields: Any
) -> dict[str, Any]:
    target = await resolve(app, call, kb, "write", owner_org)
    data, kind = await fetch_document(app, url, doc_type)
    return await ingest(
        app,
        call,
        target,
        by=call.stamp.sub,
        replace=False,
        sees=sees(call, target),
        content=data,
        doc_type=kind,
        url=kept_url(url),
        **fields,
    )


async def update(app: RagApp, call: Call, kb: str, owner_org: str | None, **fields: Any) -> dict[str, Any]:
    target = await resolve(app, call, kb, "write", owner_org)
    result = await ingest(
        app, call, target, by=call.stamp.sub, replace=True, sees=sees(call, target), **fields
    )
    if not result["unchanged"]:
        detail = {"version": str(result["version"])}
        await call.audit(
            "document.update", f"{target.name}/{result['doc_id']}", detail=detail, owner_org=target.owner
        )
    return result
