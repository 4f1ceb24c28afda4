"""Documents: get, list, delete (adding and updating: ingest.py).

A document is `<owner>__documents` {_id: "<kb>/<doc_id>", kb, doc_id, title, type, hash, seed,
version, bytes, chunks, text, metadata, acl, url, versions: [{version, hash, bytes, chunks,
created_at, created_by}], created_at, updated_at}.
"""

from __future__ import annotations

import re
from typing import Any, Final

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.rag.access import Kb, invalid, resolve
from mcpmesh.rag.app import RagApp, iso
from mcpmesh.rag.visibility import EVERYONE, mongo_filter, visible_to_view
from mcpmesh.service import Call

_DOC_ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")


def check_doc_id(value: str) -> str:
    if not _DOC_ID_RE.fullmatch(value):
        raise invalid(
            f"invalid doc_id {value[:60]!r}: 1-100 letters, digits, '_', '.', ':' or '-', starting with a "
            "letter or digit"
        )
    return value


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
        "url": doc.get("url"),
        "visible_to": visible_to_view(doc.get("acl", [EVERYONE])),
        "owner_org": kb.owner,
        "created_at": iso(doc.get("created_at")),
        "updated_at": iso(doc.get("updated_at")),
        "versions": [{**v, "created_at": iso(v.get("created_at"))} for v in doc.get("versions", [])],
    }
    if text:
        view["text"] = doc.get("text", "")
    return view


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
    detail = {"version": str(doc.get("version"))}
    await call.audit("document.delete", f"{target.name}/{doc_id}", detail=detail, owner_org=target.owner)
    return {"deleted": doc_id, "kb": target.name, "chunks": doc.get("chunks", 0)}
