"""Appending entries without transactions: reserve, write, commit (or roll back).

1. Reserve: ONE conditional update on the context doc (an update pipeline),
       filter  {_id, lock: absent, token_total <= cap - t, next_seq <= max_entries - k}
       update  next_seq += k, token_total += t, pending += {r, n: k, t, at, seq, tok}
   where `seq` and `tok` are next_seq and token_total as the update found them: this append
   owns seqs [seq, seq + k) and token offsets from tok, read back from its own pending item.
   Concurrent appends serialise on that one document: the cap can never be exceeded and
   seqs never collide. (Not findAndModify: its "before" document can be stale under
   concurrent updates, and on SecantusDB it scans the collection.)
2. Write the k entry documents (each tagged with the reservation id `r`).
3. Commit: $pull the pending item. Readers hide entries of pending reservations, so an
   append appears all at once.
On a failure in 2, the written entries are deleted and the reservation is given back
(exactly, when it is still the last one; otherwise its seqs and tokens are recorded as a
hole, still counted against the cap). A caller that dies between 1 and 3 leaves a pending
item that lifecycle.repair_pending finishes after CONTEXT_PENDING_STALE_S: it commits the
item if all its entries are there, else aborts it (the rid goes to the doc's `aborted` list,
which tells a late commit that it failed and hides any entry written after the abort).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from mcpmesh.context.access import not_found, resolve
from mcpmesh.context.app import ContextApp
from mcpmesh.context.clock import utcnow
from mcpmesh.context.entries import PreparedEntry, entry_document, prepare_entries
from mcpmesh.context.lifecycle import open_context, peek
from mcpmesh.context.storage import HOT
from mcpmesh.context.views import committed_counts
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.service import Call
from mcpmesh.store import Collection, TenantStore
from mcpmesh.telemetry.logs import get_logger

log = get_logger("mcpmesh.context.appends")
_MAX_ATTEMPTS: Final = 100
_background: set[asyncio.Task[None]] = set()


@dataclass(frozen=True)
class Reservation:
    store: TenantStore  # the context owner's
    ctx_id: str
    rid: str
    seq0: int
    tok0: int
    k: int
    t: int
    after: Mapping[str, Any]  # the context doc read back after reserving (this append pending)


def _reserve_update(rid: str, k: int, t: int, tier: str | None) -> list[dict[str, Any]]:
    now = utcnow()
    fields: dict[str, Any] = {"updated_at": now, "touched_at": now}
    if tier is not None:
        fields["tier"] = {"$literal": tier}
    item = {
        "r": {"$literal": rid},
        "n": k,
        "t": t,
        "at": now,
        "seq": "$next_seq",
        "tok": "$token_total",
    }
    return [
        {
            "$set": {
                **fields,
                "pending": {"$concatArrays": [{"$ifNull": ["$pending", []]}, [item]]},
                "next_seq": {"$add": ["$next_seq", k]},
                "token_total": {"$add": ["$token_total", t]},
            }
        }
    ]


def _reserve_filter(ctx_id: str, k: int, t: int, cap: int, max_entries: int) -> dict[str, Any]:
    return {
        "_id": ctx_id,
        "lock": None,
        "token_total": {"$lte": cap - t},
        "next_seq": {"$lte": max_entries - k},
    }


async def append(
    app: ContextApp, call: Call, ctx_id: str, raw: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The append tool: check and count first, then reserve, write, commit."""
    prepared = await prepare_entries(raw, app.settings, app.counter)
    k, t = len(prepared), sum(entry.tokens for entry in prepared)
    reservation = await _reserve_own_hot(app, call, ctx_id, k, t)
    if reservation is None:
        target = await resolve(app, call, ctx_id, "write")
        if target.owner == call.org_id:
            cap, tier = (await call.org_settings()).max_tokens_per_context, call.tier
        else:
            cap = (await app.owner_settings(target.owner, target.doc.get("tier"))).max_tokens_per_context
            tier = None
        reservation = await _reserve(app, target.store, ctx_id, k, t, cap, tier)
    await _write(app, reservation, prepared)
    return _result(reservation)


async def append_prepared(
    app: ContextApp,
    owner: TenantStore,
    ctx_id: str,
    prepared: list[PreparedEntry],
    cap: int,
    tier: str | None,
) -> dict[str, Any]:
    """Append already checked entries to `owner`'s context (create's initial entries)."""
    reservation = await _reserve(
        app, owner, ctx_id, len(prepared), sum(e.tokens for e in prepared), cap, tier
    )
    await _write(app, reservation, prepared)
    return _result(reservation)


def _result(res: Reservation) -> dict[str, Any]:
    entries, tokens = committed_counts(res.after)  # without this append, still pending there
    return {
        "ctx_id": res.ctx_id,
        "appended": res.k,
        "tokens": res.t,
        "first_seq": res.seq0,
        "last_seq": res.seq0 + res.k - 1,
        "entry_count": entries + res.k,
        "token_total": tokens + res.t,
    }


async def _reserve_own_hot(app: ContextApp, call: Call, ctx_id: str, k: int, t: int) -> Reservation | None:
    """The common case in one round trip: the caller's own hot, idle context with room left."""
    if not ctx_id.startswith("ctx-"):
        return None
    cap = (await call.org_settings()).max_tokens_per_context
    contexts = await call.store.collection(HOT[0])
    max_entries = app.settings.max_entries_per_context
    return await _try_reserve(contexts, call.store, ctx_id, k, t, cap, max_entries, call.tier)


async def _try_reserve(
    contexts: Collection,
    owner: TenantStore,
    ctx_id: str,
    k: int,
    t: int,
    cap: int,
    max_entries: int,
    tier: str | None,
) -> Reservation | None:
    """One reservation attempt (see the module doc); None if the filter did not match."""
    rid = secrets.token_hex(6)
    taken = await contexts.update_one(
        _reserve_filter(ctx_id, k, t, cap, max_entries), _reserve_update(rid, k, t, tier)
    )
    if taken.modified_count == 0:
        return None
    after = await contexts.find_one({"_id": ctx_id})
    mine = next((p for p in (after or {}).get("pending") or () if p["r"] == rid), None)
    if after is None or mine is None:  # repaired as stale already: only after CONTEXT_PENDING_STALE_S
        raise MeshException(ErrorCode.UNAVAILABLE, "the append took too long and was rolled back; retry")
    return Reservation(owner, ctx_id, rid, int(mine["seq"]), int(mine["tok"]), k, t, after)


async def _reserve(
    app: ContextApp, owner: TenantStore, ctx_id: str, k: int, t: int, cap: int, tier: str | None
) -> Reservation:
    contexts = await owner.collection(HOT[0])
    max_entries = app.settings.max_entries_per_context
    for _ in range(_MAX_ATTEMPTS):
        reservation = await _try_reserve(contexts, owner, ctx_id, k, t, cap, max_entries, tier)
        if reservation is not None:
            return reservation
        current = await contexts.find_one({"_id": ctx_id})
        if current is None or current.get("lock"):
            if await open_context(app, owner, ctx_id) is None:  # waits for a move, restores from cold
                raise not_found(ctx_id)
            continue
        if int(current["token_total"]) + t > cap:
            _, used = committed_counts(current)
            raise MeshException(
                ErrorCode.LIMIT_EXCEEDED,
                f"appending {t} tokens would exceed the limit of {cap} tokens per context "
                f"({used} already used); nothing was appended",
            )
        if int(current["next_seq"]) + k > max_entries:
            raise MeshException(
                ErrorCode.LIMIT_EXCEEDED,
                f"appending {k} entries would exceed the limit of {max_entries} entries per context; "
                "nothing was appended",
            )
    raise MeshException(ErrorCode.UNAVAILABLE, "too many concurrent appends to this context; retry")


async def _write(app: ContextApp, res: Reservation, prepared: list[PreparedEntry]) -> None:
    store = res.store
    contexts, entries = await store.collection(HOT[0]), await store.collection(HOT[1])
    now = utcnow()
    docs = []
    offset = res.tok0
    for i, entry in enumerate(prepared):
        docs.append(
            entry_document(
                res.ctx_id,
                res.seq0 + i,
                offset,
                entry,
                created_at=now,
                reservation=res.rid,
                compress_above=app.settings.compress_above_bytes,
            )
        )
        offset += entry.tokens
    try:
        async with asyncio.timeout(app.settings.write_timeout_s):
            await entries.insert_many(docs, ordered=True)
    except BaseException as exc:
        await _shielded(_roll_back(app, res))
        if isinstance(exc, Exception):
            log.warning("append failed and was rolled back", ctx_id=res.ctx_id, error=repr(exc))
            raise MeshException(
                ErrorCode.UNAVAILABLE, "the entries could not be stored; nothing was appended (retry)"
            ) from None
        raise
    committed = await contexts.update_one(
        {"_id": res.ctx_id, "pending.r": res.rid}, {"$pull": {"pending": {"r": res.rid}}}
    )
    if committed.modified_count == 0:
        # Only if this call outlived CONTEXT_PENDING_STALE_S and the repair got there first:
        # it committed the entries (all were there) or aborted the reservation.
        found = await peek(app, store, res.ctx_id)  # moved to cold or deleted since, maybe
        if found is None or res.rid in (found[0].get("aborted") or ()):
            await _shielded(_delete_written(entries, res))
            raise MeshException(ErrorCode.UNAVAILABLE, "the append took too long and was rolled back; retry")


async def _delete_written(entries: Collection, res: Reservation) -> None:
    await entries.delete_many({"ctx_id": res.ctx_id, "r": res.rid})


async def _roll_back(app: ContextApp, res: Reservation) -> None:
    store = res.store
    contexts, entries = await store.collection(HOT[0]), await store.collection(HOT[1])
    await _delete_written(entries, res)
    undone = await contexts.update_one(
        {"_id": res.ctx_id, "next_seq": res.seq0 + res.k, "pending.r": res.rid},
        {"$inc": {"next_seq": -res.k, "token_total": -res.t}, "$pull": {"pending": {"r": res.rid}}},
    )
    if undone.modified_count == 0:  # a later append reserved after this one: leave a counted hole
        await contexts.update_one(
            {"_id": res.ctx_id, "pending.r": res.rid},
            {"$pull": {"pending": {"r": res.rid}}, "$inc": {"hole_entries": res.k, "hole_tokens": res.t}},
        )
    app.stats["appends_rolled_back"] += 1


async def _shielded(work: Coroutine[Any, Any, None]) -> None:
    """Run `work` to the end even if this task is being cancelled (deadline hit mid-append)."""
    task = asyncio.ensure_future(work)
    _background.add(task)
    task.add_done_callback(_background.discard)
    await asyncio.shield(task)
