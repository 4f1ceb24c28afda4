"""Reading a context's entries: whole (paged by the reply budget) or a window, oldest first.

Every read is an index range on (ctx_id, seq) or (ctx_id, tok_start): a window of the
last N entries reads the seqs [next_seq - N, next_seq) (or, when an append is in flight
or failed and left a hole, the N highest seqs through the same index), and a window of
the last N tokens reads the entries whose `tok_start >= token_total - N`, whatever the
size of the context.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcpmesh.context.app import ContextApp
from mcpmesh.context.entries import entry_view, reply_cost
from mcpmesh.context.storage import HOT
from mcpmesh.store import TenantStore


async def read_entries(
    app: ContextApp,
    owner: TenantStore,
    doc: Mapping[str, Any],
    *,
    last_n: int | None,
    last_n_tokens: int | None,
    after_seq: int | None,
) -> dict[str, Any]:
    """Entries of the (hot) context `doc`, plus a summary of what was returned."""
    entries = await owner.collection(HOT[1])
    query: dict[str, Any] = {"ctx_id": doc["_id"]}
    # appends in flight show up all at once, when they commit; aborted ones never
    hidden = [p["r"] for p in doc.get("pending") or ()] + list(doc.get("aborted") or ())
    if hidden:
        query["r"] = {"$nin": hidden}
    lowest = after_seq + 1 if after_seq is not None else None
    if last_n is not None and not hidden and not doc.get("hole_entries"):
        # every seq below next_seq holds an entry: the last N entries are exactly this seq range
        lowest = max(lowest or 0, int(doc.get("next_seq", 0)) - last_n)
    if lowest is not None:
        query["seq"] = {"$gte": lowest}
    if last_n_tokens is not None:
        query["tok_start"] = {"$gte": int(doc.get("token_total", 0)) - last_n_tokens}
    budget = app.settings.max_reply_bytes
    used = 0
    picked: list[dict[str, Any]] = []
    truncated = False
    windowed = last_n is not None or last_n_tokens is not None
    cursor = entries.find(query).sort("seq", -1 if windowed else 1)
    if last_n is not None:
        cursor = cursor.limit(last_n)
    async for entry in cursor:
        app.stats["entries_read"] += 1
        view = entry_view(entry)
        cost = reply_cost(view)
        if picked and used + cost > budget:
            truncated = True
            break
        used += cost
        picked.append(view)
    if windowed:
        picked.reverse()
    views = picked
    result: dict[str, Any] = {
        "entries": views,
        "returned": len(views),
        "tokens": sum(view["tokens"] for view in views),
        "truncated": truncated,
    }
    if truncated and not windowed:
        result["next_after_seq"] = views[-1]["seq"]
    if truncated and windowed:
        result["note"] = "the window was cut to fit one reply: its oldest entries were left out"
    return result
