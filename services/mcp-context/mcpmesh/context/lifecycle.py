"""Finding a context wherever it lives, hot/cold tiering, deleting, and repairing crashed appends.

No MongoDB transactions: every multi-document change is a sequence of idempotent
steps guarded by a lock on the context document, so that a crash at any point leaves
a state the next caller (or the sweep) can finish. Locks are taken with a conditional
`update_one` (matched or not), never findAndModify (on SecantusDB it scans the collection).

Context document fields used here:
    lock     {op: "cold" | "hot" | "delete", at, token}: absent when idle. Taken with one
             conditional update (`lock` absent, and for a move also no pending append and
             `touched_at` old enough), released by deleting the source document.
    pending  [{r, n, t, at}]: appends that reserved seqs/tokens and have not finished.
    aborted  [r]: the latest reservations repair_pending gave up on (their seqs are holes).
    touched_at  the last get/append/update; the sweep moves contexts idle past
             CONTEXT_COLD_AFTER_S.

A move (hot -> cold, or the restore cold -> hot) of context C, lock held on the source doc:
    1. copy C's entries source -> destination (insert, duplicates ignored)
    2. delete C's source entries
    3. write the destination context doc (restore: only if absent)
    4. delete the source doc (only if it still carries our lock token)
Readers that find a locked doc wait; one that finds the lock older than the lease takes
it over and runs the same steps again (all idempotent).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from pymongo.errors import BulkWriteError

from mcpmesh.context.app import ContextApp
from mcpmesh.context.clock import seconds_ago, to_millis, utcnow
from mcpmesh.context.grants import drop_context_shares
from mcpmesh.context.limits import release_context_slot
from mcpmesh.context.storage import COLD, HOT
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.store import Collection, TenantStore

Tier = tuple[str, str]
_COPY_BATCH: Final = 1000
_DUPLICATE_KEY: Final = 11000
_TOUCH_EVERY_MAX_S: Final = 60.0
#: Reservation ids of the latest aborted appends kept on the context doc (`aborted`): the
#: append that outlived its reservation learns it was aborted, and readers hide its entries.
ABORTED_KEPT: Final = 64


class Waiter:
    """Backs off while a context is busy; gives up with a retryable error after the budget."""

    def __init__(self, budget_s: float) -> None:
        self.deadline = time.monotonic() + budget_s
        self.attempt = 0

    async def pause(self) -> None:
        if time.monotonic() > self.deadline:
            raise MeshException(
                ErrorCode.UNAVAILABLE,
                "the context is busy (being moved between storage tiers or deleted); retry",
            )
        await asyncio.sleep(min(0.002 * 2**self.attempt, 0.1))
        self.attempt += 1


def _lock(op: str, now: datetime) -> dict[str, Any]:
    return {"op": op, "at": now, "token": secrets.token_hex(8)}


async def _collections(app: ContextApp, owner: TenantStore, tier: Tier) -> tuple[Collection, Collection]:
    store = owner
    return await store.collection(tier[0]), await store.collection(tier[1])


async def peek(app: ContextApp, owner: TenantStore, ctx_id: str) -> tuple[dict[str, Any], Tier] | None:
    """The context doc as it is (hot first, then cold), without touching or restoring it."""
    hot = await owner.collection(HOT[0])
    doc = await hot.find_one({"_id": ctx_id})
    if doc is not None:
        return doc, HOT
    cold = await owner.collection(COLD[0])
    doc = await cold.find_one({"_id": ctx_id})
    if doc is not None:
        return doc, COLD
    doc = await hot.find_one({"_id": ctx_id})  # restored between the two looks
    return (doc, HOT) if doc is not None else None


async def open_context(
    app: ContextApp, owner: TenantStore, ctx_id: str, *, touch: bool = True
) -> dict[str, Any] | None:
    """The hot, unlocked context doc of `owner` (restored from cold if needed), or None.

    With `touch`, marks it used now: a conditional update (`lock` absent), made only when the
    stored `touched_at` is older than `_touch_every` (more often cannot change what the sweep
    does, and a write costs several times a read)."""
    hot = await owner.collection(HOT[0])
    cold = await owner.collection(COLD[0])
    waiter = Waiter(app.settings.busy_wait_s)
    while True:
        now = utcnow()
        doc = await hot.find_one({"_id": ctx_id, "lock": None})
        if doc is not None and touch and _touch_due(app, doc, now):
            touched = await hot.update_one({"_id": ctx_id, "lock": None}, {"$set": {"touched_at": now}})
            doc = {**doc, "touched_at": now} if touched.matched_count else None
        if doc is not None:
            if stale_pending(app, doc, now):
                await repair_pending(app, owner, doc, now)
                continue
            return doc
        locked = await hot.find_one({"_id": ctx_id})
        if locked is not None:
            await settle(app, owner, locked, HOT, waiter)
            continue
        cold_doc = await cold.find_one({"_id": ctx_id})
        if cold_doc is None:
            if await hot.find_one({"_id": ctx_id}, {"_id": 1}) is not None:
                continue  # restored by someone else in between
            return None
        if cold_doc.get("lock"):
            await settle(app, owner, cold_doc, COLD, waiter)
            continue
        if not await restore(app, owner, ctx_id):
            await waiter.pause()


def _touch_due(app: ContextApp, doc: Mapping[str, Any], now: datetime) -> bool:
    """`touched_at` is older than a tenth of CONTEXT_COLD_AFTER_S (at most a minute): a context
    touched more recently than that is far from the sweep's cutoff."""
    at = doc.get("touched_at")
    every = min(_TOUCH_EVERY_MAX_S, app.settings.cold_after_s / 10)
    return at is None or to_millis(at) < seconds_ago(now, every)


async def settle(
    app: ContextApp, owner: TenantStore, doc: Mapping[str, Any], tier: Tier, waiter: Waiter
) -> None:
    """A locked doc: finish the operation if its lock is stale, else wait a little."""
    lock = doc.get("lock") or {}
    at = lock.get("at")
    if at is not None and to_millis(at) < seconds_ago(utcnow(), app.settings.lock_lease_s):
        await resume(app, owner, doc, tier)
        return
    await waiter.pause()


async def _reclaim(coll: Collection, doc: Mapping[str, Any], now: datetime) -> str | None:
    """Take over a stale lock; None when someone else already did."""
    lock = doc.get("lock") or {}
    token = secrets.token_hex(8)
    taken = await coll.update_one(
        {"_id": doc["_id"], "lock.token": lock.get("token")},
        {"$set": {"lock.token": token, "lock.at": now}},
    )
    return token if taken.modified_count else None


async def resume(app: ContextApp, owner: TenantStore, doc: Mapping[str, Any], tier: Tier) -> None:
    contexts, _ = await _collections(app, owner, tier)
    token = await _reclaim(contexts, doc, utcnow())
    if token is None:
        return
    op = (doc.get("lock") or {}).get("op")
    app.stats[f"resumed_{op}"] += 1
    if op == "delete":
        await _finish_delete(app, owner, doc["_id"], tier, token)
    elif op == "cold" and tier == HOT:
        await _transfer(app, owner, doc["_id"], HOT, COLD, token)
    elif op == "hot" and tier == COLD:
        await _transfer(app, owner, doc["_id"], COLD, HOT, token)


async def _insert_ignoring_duplicates(coll: Collection, docs: list[dict[str, Any]]) -> None:
    try:
        await coll.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if not errors or any(error.get("code") != _DUPLICATE_KEY for error in errors):
            raise


async def _transfer(
    app: ContextApp, owner: TenantStore, ctx_id: str, src: Tier, dst: Tier, token: str
) -> bool:
    """Steps 1-4 of a move (see the module doc); True when this call completed it."""
    src_contexts, src_entries = await _collections(app, owner, src)
    dst_contexts, dst_entries = await _collections(app, owner, dst)
    last = -1
    while True:
        batch = await (
            src_entries.find({"ctx_id": ctx_id, "seq": {"$gt": last}}).sort("seq", 1).limit(_COPY_BATCH)
        ).to_list(None)
        if not batch:
            break
        await _insert_ignoring_duplicates(dst_entries, batch)
        last = batch[-1]["seq"]
    await src_entries.delete_many({"ctx_id": ctx_id})
    source = await src_contexts.find_one({"_id": ctx_id, "lock.token": token})
    if source is None:
        return False
    moved = {key: value for key, value in source.items() if key != "lock"}
    if dst == HOT:
        moved["touched_at"] = utcnow()
        fields = {key: value for key, value in moved.items() if key != "_id"}
        await dst_contexts.update_one({"_id": ctx_id}, {"$setOnInsert": fields}, upsert=True)
    else:
        await dst_contexts.replace_one({"_id": ctx_id}, moved, upsert=True)
    done = await src_contexts.delete_one({"_id": ctx_id, "lock.token": token})
    app.stats["moved_to_cold" if dst == COLD else "restored"] += 1
    return bool(done.deleted_count)


async def restore(app: ContextApp, owner: TenantStore, ctx_id: str) -> bool:
    """Bring a cold context back to the hot tier; False if another caller holds it."""
    cold = await owner.collection(COLD[0])
    lock = _lock("hot", utcnow())
    claimed = await cold.update_one({"_id": ctx_id, "lock": None}, {"$set": {"lock": lock}})
    if not claimed.modified_count:
        return False
    await _transfer(app, owner, ctx_id, COLD, HOT, lock["token"])
    return True


async def move_to_cold(app: ContextApp, owner: TenantStore, ctx_id: str, cutoff: datetime) -> bool:
    """Move one context untouched since `cutoff` to the cold tier (the sweep's step)."""
    cold = await owner.collection(COLD[0])
    leftover = await cold.find_one({"_id": ctx_id})
    if leftover is not None:  # a restore that crashed after writing the hot doc: finish it first
        if leftover.get("lock"):
            await settle(app, owner, leftover, COLD, Waiter(0))
        return False
    hot = await owner.collection(HOT[0])
    lock = _lock("cold", utcnow())
    claimed = await hot.update_one(
        {"_id": ctx_id, "lock": None, "pending": {"$size": 0}, "touched_at": {"$lt": cutoff}},
        {"$set": {"lock": lock}},
    )
    if not claimed.modified_count:
        return False
    return await _transfer(app, owner, ctx_id, HOT, COLD, lock["token"])


async def delete_context(app: ContextApp, owner: TenantStore, ctx_id: str) -> dict[str, Any] | None:
    """Delete a context (either tier) with its entries and shares; None if there is none.

    Waits for in-flight appends to finish so none writes into a deleted context."""
    waiter = Waiter(app.settings.busy_wait_s)
    while True:
        for tier in (HOT, COLD):
            contexts = await owner.collection(tier[0])
            lock = _lock("delete", utcnow())
            claimed = await contexts.update_one(
                {"_id": ctx_id, "lock": None, "pending": {"$size": 0}}, {"$set": {"lock": lock}}
            )
            if claimed.modified_count:
                doc = await contexts.find_one({"_id": ctx_id, "lock.token": lock["token"]})
                await _finish_delete(app, owner, ctx_id, tier, lock["token"])
                return doc
        found = await peek(app, owner, ctx_id)
        if found is None:
            return None
        doc, tier = found
        now = utcnow()
        if doc.get("lock"):
            await settle(app, owner, doc, tier, waiter)
        elif stale_pending(app, doc, now):
            await repair_pending(app, owner, doc, now)
        else:
            await waiter.pause()


async def _finish_delete(app: ContextApp, owner: TenantStore, ctx_id: str, tier: Tier, token: str) -> None:
    for entries_kind in (HOT[1], COLD[1]):
        await (await owner.collection(entries_kind)).delete_many({"ctx_id": ctx_id})
    await drop_context_shares(app, owner, ctx_id)
    contexts = await owner.collection(tier[0])
    done = await contexts.delete_one({"_id": ctx_id, "lock.token": token})
    if done.deleted_count:
        await release_context_slot(app, owner)


# -- appends that never finished -----------------------------------------------------------------


def stale_pending(app: ContextApp, doc: Mapping[str, Any], now: datetime) -> bool:
    cutoff = seconds_ago(now, app.settings.pending_stale_s)
    return any(to_millis(p["at"]) < cutoff for p in doc.get("pending") or ())


async def repair_pending(app: ContextApp, owner: TenantStore, doc: Mapping[str, Any], now: datetime) -> None:
    """Finish appends whose caller died: commit one whose entries are all there, else remove
    its entries and record the reserved seqs and tokens as a hole (they stay counted)."""
    contexts, entries = await _collections(app, owner, HOT)
    cutoff = seconds_ago(now, app.settings.pending_stale_s)
    for item in doc.get("pending") or ():
        if to_millis(item["at"]) >= cutoff:
            continue
        rid, n, t = item["r"], int(item["n"]), int(item["t"])
        present = await entries.count_documents({"ctx_id": doc["_id"], "r": rid})
        if present == n:
            await contexts.update_one(
                {"_id": doc["_id"], "pending.r": rid}, {"$pull": {"pending": {"r": rid}}}
            )
            app.stats["pending_committed"] += 1
            continue
        # Abort first, in one conditional update: if the append committed since the count,
        # this matches nothing and its entries stay. Entries go only after a real abort.
        aborted = await contexts.update_one(
            {"_id": doc["_id"], "pending.r": rid},
            {
                "$pull": {"pending": {"r": rid}},
                "$inc": {"hole_entries": n, "hole_tokens": t},
                "$push": {"aborted": {"$each": [rid], "$slice": -ABORTED_KEPT}},
            },
        )
        if aborted.modified_count:
            await entries.delete_many({"ctx_id": doc["_id"], "r": rid})
            app.stats["pending_removed"] += 1
