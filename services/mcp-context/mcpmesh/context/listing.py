"""list and search: contexts of one owner (the caller, the system org, or an org that shared a
namespace with the caller), newest update first, keyset-paginated over both tiers.

Listing does not count as using a context: it neither touches nor restores cold ones.
Text search matches the title, or (with in_content) any entry's content, as a
case-insensitive substring. On MongoDB proper the title/content match is a regex scan of
the org's entries; compressed entries are decompressed to be matched. See README.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final

from pymongo import DESCENDING

from mcpmesh.context.access import find_namespace_grant, system_store
from mcpmesh.context.app import ContextApp
from mcpmesh.context.clock import epoch_ms, from_epoch_ms, parse_time
from mcpmesh.context.cursor import decode_cursor, encode_cursor, query_hash
from mcpmesh.context.entries import entry_content
from mcpmesh.context.grants import Grant
from mcpmesh.context.ids import CONTEXT_ID_RE
from mcpmesh.context.inputs import (
    check_limit,
    check_namespace,
    check_org,
    check_tag,
    check_text,
    is_system_namespace,
)
from mcpmesh.context.storage import COLD, HOT
from mcpmesh.context.views import context_view
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.service import Call
from mcpmesh.store import TenantStore

_SORT: Final = [("updated_at", DESCENDING), ("_id", DESCENDING)]


async def _owner_for(
    app: ContextApp, call: Call, namespace: str | None, owner_org: str | None
) -> tuple[TenantStore, str, Grant | None]:
    """(store whose contexts are listed, the caller's role there, the grant used)."""
    if namespace is not None and is_system_namespace(namespace):
        if owner_org not in (None, app.system_org):
            raise MeshException(
                ErrorCode.INVALID_REQUEST, "system namespaces belong to no org: leave owner_org out"
            )
        return await system_store(app, call), "system", None
    if owner_org is None or owner_org == call.org_id:
        return call.store, "owner", None
    owner = check_org(owner_org, "owner_org")
    if namespace is None:
        raise MeshException(
            ErrorCode.INVALID_REQUEST,
            "owner_org lists a namespace another org shared with yours: give namespace too",
        )
    shared = await find_namespace_grant(app, call, owner, namespace)
    if shared is None:
        raise MeshException(
            ErrorCode.NOT_FOUND, f"no namespace {namespace!r} of that org is shared with your org"
        )
    return shared.store, shared.grant.access, shared.grant


async def _content_matches(app: ContextApp, owner: TenantStore, text: str) -> list[str]:
    """Ids of the owner's contexts with an entry containing `text` (case-insensitive)."""
    pattern = re.escape(text)
    compiled = re.compile(pattern, re.IGNORECASE)
    found: set[str] = set()
    for kind in (HOT[1], COLD[1]):
        entries = await owner.collection(kind)
        found.update(await entries.distinct("ctx_id", {"content": {"$regex": pattern, "$options": "i"}}))
        async for doc in entries.find({"zipped": True}, {"ctx_id": 1, "z": 1}):
            if doc["ctx_id"] not in found and compiled.search(entry_content(doc)):
                found.add(doc["ctx_id"])
    return sorted(found)


async def find_contexts(
    app: ContextApp,
    call: Call,
    *,
    tool: str,
    namespace: str | None,
    tag: str | None,
    updated_since: str | None,
    text: str | None,
    in_content: bool,
    owner_org: str | None,
    limit: int | None,
    cursor: str | None,
) -> dict[str, Any]:
    namespace = check_namespace(namespace) if namespace is not None else None
    tag = check_tag(tag) if tag is not None else None
    since = parse_time(updated_since, "updated_since") if updated_since is not None else None
    text = check_text(text) if text is not None else None
    page = check_limit(limit)
    owner, role, grant = await _owner_for(app, call, namespace, owner_org)
    binding = query_hash(
        tool, call.org_id, owner.org_id, namespace, tag, epoch_ms(since) if since else None, text, in_content
    )
    position = decode_cursor(cursor, binding, CONTEXT_ID_RE) if cursor is not None else None

    filters: list[dict[str, Any]] = []
    if namespace is not None:
        filters.append({"namespace": namespace})
    if tag is not None:
        filters.append({"tags": tag})
    if since is not None:
        filters.append({"updated_at": {"$gte": since}})
    if text is not None:
        matches: list[dict[str, Any]] = [{"title": {"$regex": re.escape(text), "$options": "i"}}]
        if in_content:
            ids = await _content_matches(app, owner, text)
            if ids:
                matches.append({"_id": {"$in": ids}})
        filters.append({"$or": matches})
    if position is not None:
        at, last_id = from_epoch_ms(position[0]), position[1]
        filters.append({"$or": [{"updated_at": {"$lt": at}}, {"updated_at": at, "_id": {"$lt": last_id}}]})
    query: dict[str, Any] = {"$and": filters} if filters else {}

    rows: list[tuple[datetime, str, dict[str, Any], str]] = []
    for tier, label in ((HOT, "hot"), (COLD, "cold")):
        contexts = await owner.collection(tier[0])
        async for doc in contexts.find(query).sort(_SORT).limit(page + 1):
            rows.append((doc["updated_at"], doc["_id"], doc, label))
    rows.sort(key=lambda row: (row[0], row[1]), reverse=True)
    unique: list[tuple[datetime, str, dict[str, Any], str]] = []
    seen: set[str] = set()
    for row in rows:  # mid-move, a context can briefly be in both tiers
        if row[1] not in seen:
            seen.add(row[1])
            unique.append(row)
    items = [context_view(doc, role=role, grant=grant, storage=label) for _, _, doc, label in unique[:page]]
    result: dict[str, Any] = {"contexts": items, "next_cursor": None}
    if len(unique) > page:
        last = unique[page - 1]
        result["next_cursor"] = encode_cursor(binding, epoch_ms(last[0]), last[1])
    if owner.org_id not in (call.org_id, app.system_org):
        result["owner_org"] = owner.org_id
    return result
