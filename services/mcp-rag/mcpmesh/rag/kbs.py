"""The knowledge-base tools: create, list, get, delete. A kb's record is `<owner>__kbs`
{_id: name, title, description, documents, chunks, bytes, dimensions, created_at, created_by};
its vectors are the Qdrant collection `<owner>__<name>` (made at the first document, when the
embedding size is known)."""

from __future__ import annotations

from typing import Any

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.rag.access import Kb, check_kb, invalid, is_admin, kb_doc, resolve, system_kbs
from mcpmesh.rag.app import Caller, RagApp, iso, utcnow
from mcpmesh.rag.sharing import drop_kb_shares
from mcpmesh.service import Call
from mcpmesh.store import TenantStore

MAX_TITLE = 200
MAX_DESCRIPTION = 2000


def kb_view(kb: Kb) -> dict[str, Any]:
    doc = kb.doc
    return {
        "kb": kb.name,
        "title": doc.get("title", ""),
        "description": doc.get("description", ""),
        "owner_org": kb.owner,
        "access": kb.role,
        "documents": doc.get("documents", 0),
        "chunks": doc.get("chunks", 0),
        "bytes": doc.get("bytes", 0),
        "created_at": iso(doc.get("created_at")),
    }


async def usage(store: TenantStore) -> dict[str, int]:
    """What an org holds in all its kbs."""
    totals = {"knowledge_bases": 0, "documents": 0, "chunks": 0, "bytes": 0}
    async for doc in (await store.collection("kbs")).find({}):
        totals["knowledge_bases"] += 1
        for key in ("documents", "chunks", "bytes"):
            totals[key] += int(doc.get(key, 0))
    return totals


async def check_room(app: RagApp, call: Caller, kb: Kb, **adding: int) -> None:
    """Refuse with limit_exceeded when the kb's owner would hold more than its tier allows (a
    shared kb: the owner's tier when it last created a kb, counted in the owner's store)."""
    if kb.role == "system":
        return  # the system org's kbs are not counted against a tenant
    tier = call.tier if kb.role == "owner" else str(kb.doc.get("owner_tier", "free"))
    limits = app.settings.tier(tier)
    held = await usage(kb.store)
    whose = "your org's" if kb.role == "owner" else f"the owner org's ({kb.owner})"
    for what, more in adding.items():
        allowed = getattr(limits, what)
        if held[what] + more > allowed:
            raise MeshException(
                ErrorCode.LIMIT_EXCEEDED,
                f"{whose} {tier} tier allows {allowed} {what.replace('_', ' ')} in all knowledge "
                f"bases; it holds {held[what]} and this would add {more}: delete some or upgrade the tier",
                details={"limit": what, "allowed": allowed, "held": held[what], "adding": more},
            )


async def create(
    app: RagApp, call: Call, *, kb: str, title: str, description: str, system: bool
) -> dict[str, Any]:
    kb = check_kb(kb)
    if len(title) > MAX_TITLE or len(description) > MAX_DESCRIPTION:
        raise invalid(f"title is at most {MAX_TITLE} characters, description at most {MAX_DESCRIPTION}")
    if system:
        if not is_admin(call):
            raise MeshException(ErrorCode.FORBIDDEN, "system knowledge bases need the 'admin' scope")
        store, vectors = await system_kbs(app, call)
        role = "system"
    else:
        store, vectors, role = call.store, call.vectors, "owner"
    now = utcnow()
    doc = {
        "_id": kb,
        "title": title,
        "description": description,
        "documents": 0,
        "chunks": 0,
        "bytes": 0,
        "created_at": now,
        "created_by": call.stamp.sub,
        "owner_tier": call.tier,
    }
    target = Kb(kb, doc, store, vectors, role)  # type: ignore[arg-type]
    if await kb_doc(store, kb) is not None:
        raise MeshException(ErrorCode.CONFLICT, f"knowledge base {kb!r} exists already")
    await check_room(app, call, target, knowledge_bases=1)
    kbs = await store.collection("kbs")
    try:
        await kbs.insert_one(doc)
    except Exception:
        if await kb_doc(store, kb) is not None:
            raise MeshException(ErrorCode.CONFLICT, f"knowledge base {kb!r} exists already") from None
        raise
    return kb_view(target)


async def list_kbs(app: RagApp, call: Call) -> dict[str, Any]:
    own = [doc async for doc in (await call.store.collection("kbs")).find({}).sort("_id", 1)]
    items = [kb_view(Kb(d["_id"], d, call.store, call.vectors, "owner")) for d in own]
    if call.org_id != app.settings.system_org:
        store, vectors = await system_kbs(app, call)
        async for doc in (await store.collection("kbs")).find({}).sort("_id", 1):
            items.append(kb_view(Kb(doc["_id"], doc, store, vectors, "system")))
    return {"knowledge_bases": items}


async def get(app: RagApp, call: Call, kb: str, owner_org: str | None) -> dict[str, Any]:
    return kb_view(await resolve(app, call, kb, "read", owner_org))


async def delete(app: RagApp, call: Call, kb: str) -> dict[str, Any]:
    found = await resolve(app, call, kb, "delete")
    if found.role not in ("owner", "system"):
        raise MeshException(ErrorCode.FORBIDDEN, "only the owner org can delete a knowledge base")
    kbs = await found.store.collection("kbs")
    # Marked first: a write under way into the kb sees the mark and undoes itself (ingest.py); a
    # deletion that stops half-way is finished by calling delete_kb again.
    await kbs.update_one({"_id": found.name}, {"$set": {"deleting": True}})
    await drop_kb_shares(app, found.store, found.name)
    await found.vectors.drop_kb(found.name)
    await (await found.store.collection("documents")).delete_many({"kb": found.name})
    await kbs.delete_one({"_id": found.name})
    await call.audit("kb.delete", found.name, owner_org=found.owner)
    return {"deleted": found.name, "documents": found.doc.get("documents", 0)}
