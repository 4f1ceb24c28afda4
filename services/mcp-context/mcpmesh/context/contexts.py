"""The context tools' logic: create, get, update, delete."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mcpmesh.context.access import is_admin, not_found, resolve, system_store
from mcpmesh.context.app import SYSTEM_TIER, ContextApp
from mcpmesh.context.appends import append_prepared
from mcpmesh.context.clock import utcnow
from mcpmesh.context.entries import prepare_entries
from mcpmesh.context.ids import check_context_id, new_context_id
from mcpmesh.context.inputs import (
    check_count,
    check_metadata,
    check_namespace,
    check_tags,
    check_title,
    invalid,
    is_system_namespace,
)
from mcpmesh.context.lifecycle import Waiter, delete_context, open_context
from mcpmesh.context.limits import release_context_slot, take_context_slot
from mcpmesh.context.reads import read_entries
from mcpmesh.context.storage import HOT
from mcpmesh.context.views import context_view
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.service import Call


async def create(
    app: ContextApp,
    call: Call,
    *,
    title: str,
    namespace: str,
    tags: list[str] | None,
    metadata: dict[str, Any] | None,
    entries: Sequence[Mapping[str, Any]] | None,
) -> dict[str, Any]:
    title = check_title(title)
    namespace = check_namespace(namespace)
    tags = check_tags(tags if tags is not None else [])
    metadata = check_metadata(metadata if metadata is not None else {})
    prepared = await prepare_entries(entries, app.settings, app.counter) if entries else []
    if is_system_namespace(namespace):
        if not is_admin(call):
            raise MeshException(
                ErrorCode.FORBIDDEN, "creating contexts in system namespaces needs the 'admin' scope"
            )
        owner, tier = await system_store(app, call), SYSTEM_TIER
        settings = await app.owner_settings(owner.org_id, tier)
    else:
        owner, tier = call.store, call.tier
        settings = await call.org_settings()
    tokens = sum(entry.tokens for entry in prepared)
    if tokens > settings.max_tokens_per_context:
        raise MeshException(
            ErrorCode.LIMIT_EXCEEDED,
            f"the initial entries hold {tokens} tokens; the limit is {settings.max_tokens_per_context} per context",
        )
    await take_context_slot(app, owner, settings.max_contexts)
    now = utcnow()
    doc: dict[str, Any] = {
        "_id": new_context_id(),
        "namespace": namespace,
        "title": title,
        "tags": tags,
        "metadata": metadata,
        "created_at": now,
        "updated_at": now,
        "touched_at": now,
        "created_by": call.org_id,
        "tier": tier,
        "next_seq": 0,
        "token_total": 0,
        "hole_entries": 0,
        "hole_tokens": 0,
        "pending": [],
    }
    contexts = await owner.collection(HOT[0])
    try:
        await contexts.insert_one(doc)
    except BaseException:
        await release_context_slot(app, owner)
        raise
    if prepared:
        try:
            await append_prepared(app, owner, doc["_id"], prepared, settings.max_tokens_per_context, tier)
        except BaseException:
            await delete_context(app, owner, doc["_id"])  # nothing partially written
            raise
        doc = await contexts.find_one({"_id": doc["_id"]}) or doc
    return context_view(doc, role="owner" if owner.org_id == call.org_id else "system")


async def get(
    app: ContextApp,
    call: Call,
    ctx_id: str,
    *,
    last_n: int | None,
    last_n_tokens: int | None,
    after_seq: int | None,
) -> dict[str, Any]:
    last_n = check_count(last_n, "last_n")
    last_n_tokens = check_count(last_n_tokens, "last_n_tokens")
    after_seq = check_count(after_seq, "after_seq", minimum=-1)
    target = await resolve(app, call, ctx_id, "read")
    view = context_view(target.doc, role=target.role, grant=target.grant)
    window = await read_entries(
        app, target.store, target.doc, last_n=last_n, last_n_tokens=last_n_tokens, after_seq=after_seq
    )
    view["entries"] = window.pop("entries")
    view["window"] = window
    return view


async def update(
    app: ContextApp,
    call: Call,
    ctx_id: str,
    *,
    title: str | None,
    tags: list[str] | None,
    metadata: dict[str, Any] | None,
) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if title is not None:
        changes["title"] = check_title(title)
    if tags is not None:
        changes["tags"] = check_tags(tags)
    if metadata is not None:
        changes["metadata"] = check_metadata(metadata)
    if not changes:
        raise invalid("nothing to update: give title, tags and/or metadata")
    target = await resolve(app, call, ctx_id, "write")
    contexts = await target.store.collection(HOT[0])
    waiter = Waiter(app.settings.busy_wait_s)
    while True:
        now = utcnow()
        done = await contexts.update_one(
            {"_id": ctx_id, "lock": None}, {"$set": {**changes, "updated_at": now, "touched_at": now}}
        )
        doc = await contexts.find_one({"_id": ctx_id}) if done.matched_count else None
        if doc is not None:
            return context_view(doc, role=target.role, grant=target.grant)
        if await open_context(app, target.store, ctx_id) is None:  # moved or locked meanwhile
            raise not_found(ctx_id)
        await waiter.pause()


async def delete(app: ContextApp, call: Call, ctx_id: str) -> dict[str, Any]:
    check_context_id(ctx_id)
    gone = await delete_context(app, call.store, ctx_id)
    if gone is None:
        target = await resolve(app, call, ctx_id, "delete")  # system (admin), else forbidden / not found
        gone = await delete_context(app, target.store, ctx_id)
        if gone is None:
            raise not_found(ctx_id)
    return {"deleted": ctx_id, "title": gone.get("title"), "namespace": gone.get("namespace")}
