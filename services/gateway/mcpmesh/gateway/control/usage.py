"""Usage roll-up: UsageEvents from JetStream into hourly buckets in the `usage` collection.

Buckets: one document per org, key, service, method, tool and hour — and, for events of LLM
calls, model and payer (`llm_model`, `llm_billed_to`) —, `_id` built from them, summing calls,
errors, latency, bytes and LLM tokens/cost.

Exactly once without transactions, with any number of writers holding the same event
(JetStream redelivers a batch whose ack deadline passed, to any gateway replica):

1. Claim: each event gets a marker row (`_id = "e|<event_id>"`, state `pending`, epoch 0).
   The insert is the claim: a duplicate means another writer claimed it first.
2. Count: ONE update of the bucket adds the events' numbers and pushes their ids onto its
   `pending` list, and only matches if none of the ids is in `pending` (so counting twice
   at once is impossible) and none is fenced (see 4).
3. Finish: the markers turn `applied` (only those still `pending` at this writer's epoch),
   then their ids leave `pending`.
4. Take over: a redelivered event whose marker is still `pending` (its writer crashed, or
   is merely slow) gets a new epoch (an update conditioned on the epoch it was read at, so
   of racing writers exactly one gets each epoch), and the bucket a fence `fence.<event_id>`
   raised to that epoch (`$max`). Counting it then requires the
   fence to equal the counter's epoch, so a writer that was overtaken can never count it,
   however late it wakes; and only the writer of the marker's current epoch may finish it.
   Fences are few (one per takeover) and stay with their bucket.
A write returns (and its batch is acked) only once every event in it is `applied`, by
whichever writer; an event still pending after a few takeovers fails the write, so the
batch comes back later. No findAndModify: on SecantusDB it scans the collection.
Markers expire after MARKER_TTL_S (a TTL index; longer than the USAGE stream keeps messages).
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pymongo.errors import BulkWriteError, DuplicateKeyError

from mcpmesh.gateway.control.bulk import Update, update_each
from mcpmesh.gateway.control.validation import now
from mcpmesh.proto.events import UsageEvent
from mcpmesh.proto.ids import InvalidIdentifier, validate_org_id
from mcpmesh.proto.subjects import org_and_name
from mcpmesh.store import Store

MARKER_TTL_S: Final = 40 * 86400  # USAGE keeps 30 days
DUPLICATE_KEY: Final = 11000
SETTLE_ATTEMPTS: Final = 8
SETTLE_PAUSE_S: Final = 0.05
#: Event ids become field names of bucket fences: plain characters only.
EVENT_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
BUCKET, MARKER = "hour", "event"

#: Summed fields of a bucket and of a query result.
SUMS: Final = (
    "calls",
    "errors",
    "latency_ms_sum",
    "bytes_in",
    "bytes_out",
    "llm_prompt_tokens",
    "llm_completion_tokens",
    "llm_cached_tokens",
    "llm_cost_usd",
)
#: Dimensions of LLM calls: `<provider>/<model>` (a name outside this pattern rolls up as
#: "other", so a bucket id stays plain and bounded) and who pays the provider.
LLM_DIMS: Final = ("llm_model", "llm_billed_to")
LLM_MODEL: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@/+-]{0,128}")
BILLED_TO: Final = ("system", "org")
GROUP_FIELDS: Final = ("org_id", "key_id", "service", "method", "tool", *LLM_DIMS, "hour", "day")


def hour_of(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC).replace(minute=0, second=0, microsecond=0)


def llm_dims(event: UsageEvent) -> dict[str, str | None]:
    """The event's model and payer (both None for an event that is not an LLM call)."""
    model = event.llm_model
    if model is None:
        return dict.fromkeys(LLM_DIMS)
    billed = event.llm_billed_to if event.llm_billed_to in BILLED_TO else None
    return {"llm_model": model if LLM_MODEL.fullmatch(model) else "other", "llm_billed_to": billed}


def bucket_id(event: UsageEvent) -> str:
    hour = hour_of(event.ts).strftime("%Y-%m-%dT%H")
    parts = ["h", event.org_id, event.key_id, event.service, event.method, event.tool or "-", hour]
    llm = llm_dims(event)
    if llm["llm_model"] is not None:  # other events keep the ids they always had
        parts += [llm["llm_model"], llm["llm_billed_to"] or "-"]
    return "|".join(parts)


def marker_id(event_id: str) -> str:
    return f"e|{event_id}"


def event_matches_subject(subject: str, event: UsageEvent) -> bool:
    """`usage.<org>.<service>` must name the event's own org and service. Only `svc-<service>`
    may publish on `usage.*.<service>` (broker permissions), so the subject names the publisher."""
    if not EVENT_ID.fullmatch(event.event_id):
        return False
    try:
        return org_and_name(subject, "usage") == (validate_org_id(event.org_id), event.service)
    except InvalidIdentifier:
        return False


def _deltas(events: list[UsageEvent]) -> dict[str, float]:
    sums: dict[str, float] = dict.fromkeys(SUMS, 0)
    for e in events:
        sums["calls"] += 1
        sums["errors"] += 0 if e.status == "ok" else 1
        sums["latency_ms_sum"] += e.latency_ms
        sums["bytes_in"] += e.bytes_in
        sums["bytes_out"] += e.bytes_out
        sums["llm_prompt_tokens"] += e.llm_prompt_tokens or 0
        sums["llm_completion_tokens"] += e.llm_completion_tokens or 0
        sums["llm_cached_tokens"] += e.llm_cached_tokens or 0
        sums["llm_cost_usd"] += e.llm_cost_usd or 0.0
    return sums


def _dims(event: UsageEvent) -> dict[str, Any]:
    hour = hour_of(event.ts)
    return {
        "kind": BUCKET,
        "org_id": event.org_id,
        "key_id": event.key_id,
        "service": event.service,
        "method": event.method,
        "tool": event.tool,
        **llm_dims(event),
        "hour": hour,
        "day": hour.strftime("%Y-%m-%d"),
    }


def _fence(event_id: str) -> str:
    return f"fence.{event_id}"


class UsageRollup:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def _rows(self) -> Any:
        return await self.store.control("usage")

    async def write(self, events: list[UsageEvent]) -> None:
        """Apply a batch exactly once (see the module docstring); safe to call again with any of it."""
        unique = {e.event_id: e for e in events if EVENT_ID.fullmatch(e.event_id)}
        if not unique:
            return
        rows = await self._rows()
        expire_at = now() + timedelta(seconds=MARKER_TTL_S)
        markers = [
            {
                "_id": marker_id(e.event_id),
                "kind": MARKER,
                "org_id": e.org_id,
                "bucket": bucket_id(e),
                "state": "pending",
                "epoch": 0,
                "expire_at": expire_at,
            }
            for e in unique.values()
        ]
        seen: set[str] = set()
        try:
            await rows.insert_many(markers, ordered=False)
        except BulkWriteError as exc:
            for error in exc.details.get("writeErrors", []):
                if error.get("code") != DUPLICATE_KEY:
                    raise
                seen.add(markers[error["index"]]["_id"].removeprefix("e|"))
        claimed = [e for eid, e in unique.items() if eid not in seen]
        by_bucket: dict[str, list[UsageEvent]] = defaultdict(list)
        for event in claimed:
            by_bucket[bucket_id(event)].append(event)
        await self._apply_buckets(rows, by_bucket)
        unfinished = await self._finish(rows, claimed, epoch=0)  # taken over meanwhile: rare
        redelivered = [unique[eid] for eid in seen]
        pending = await self._still_pending(rows, redelivered)
        # Applied already: their finisher may have died before dropping them from `pending`.
        await self._unpend(rows, [e for e in redelivered if e.event_id not in pending])
        for event in [*unfinished, *(e for e in redelivered if e.event_id in pending)]:
            await self._settle(rows, event)

    async def _apply_buckets(self, rows: Any, by_bucket: dict[str, list[UsageEvent]]) -> None:
        """Every bucket's update in one bulk write; a bucket whose update was refused (some id
        counted or fenced already) is retried event by event."""
        buckets = list(by_bucket)
        refused = await update_each(rows, [self._update(b, by_bucket[b]) for b in buckets])
        for i in sorted(refused):
            group = by_bucket[buckets[i]]
            if len(group) > 1:
                await update_each(rows, [self._update(buckets[i], [event]) for event in group])

    @staticmethod
    def _update(bucket: str, group: list[UsageEvent], epoch: int = 0) -> Update:
        """Add the group's numbers and ids to the bucket, only if none of the ids is there yet
        and, for each id, the fence is absent (epoch 0, the claimer) or at this epoch."""
        ids = [e.event_id for e in group]
        fences = {_fence(i): ({"$exists": False} if epoch == 0 else epoch) for i in ids}
        update = {
            "$inc": _deltas(group),
            "$push": {"pending": {"$each": ids}},
            "$setOnInsert": _dims(group[0]),
        }
        return Update({"_id": bucket, "pending": {"$nin": ids}, **fences}, update, upsert=epoch == 0)

    async def _finish(
        self, rows: Any, events: list[UsageEvent], *, epoch: int, bucket: str | None = None
    ) -> list[UsageEvent]:
        """Mark applied the markers still pending at `epoch`, then drop those ids from `pending`.
        Returns the events this could not mark (another writer holds a later epoch)."""
        if not events:
            return []
        ids = [marker_id(e.event_id) for e in events]
        done = await rows.update_many(
            {"_id": {"$in": ids}, "state": "pending", "epoch": epoch}, {"$set": {"state": "applied"}}
        )
        mine = events
        if done.modified_count != len(events):  # some were taken over, or finished by a retry
            applied = {
                m["_id"]
                async for m in rows.find(
                    {"_id": {"$in": ids}, "state": "applied", "epoch": epoch}, {"_id": 1}
                )
            }
            mine = [e for e in events if marker_id(e.event_id) in applied]
        await self._unpend(rows, mine, bucket)
        marked = {e.event_id for e in mine}
        return [e for e in events if e.event_id not in marked]

    @staticmethod
    async def _unpend(rows: Any, events: list[UsageEvent], bucket: str | None = None) -> None:
        """Drop the ids of applied events from their buckets' `pending` (nobody can count them again)."""
        touched: dict[str, list[str]] = defaultdict(list)
        for event in events:
            touched[bucket or bucket_id(event)].append(event.event_id)
        await update_each(
            rows,
            [
                Update({"_id": bucket}, {"$pull": {"pending": {"$in": ids}}})
                for bucket, ids in touched.items()
            ],
        )

    async def _still_pending(self, rows: Any, redelivered: list[UsageEvent]) -> set[str]:
        """Of events whose marker existed: the ids of those whose marker is not `applied` yet."""
        if not redelivered:
            return set()
        ids = [marker_id(e.event_id) for e in redelivered]
        query = {"_id": {"$in": ids}, "state": "pending"}
        return {m["_id"].removeprefix("e|") async for m in rows.find(query, {"_id": 1})}

    async def _settle(self, rows: Any, event: UsageEvent) -> None:
        """Return only once the event's marker is `applied`, taking the event over (a new epoch)
        while it is not, with a growing pause between attempts (another writer may hold it and be
        finishing). Raises if it stays pending: the batch is then redelivered later."""
        for attempt in range(SETTLE_ATTEMPTS):
            if attempt:
                await asyncio.sleep(SETTLE_PAUSE_S * attempt)
            marker = await rows.find_one(
                {"_id": marker_id(event.event_id)}, {"state": 1, "epoch": 1, "bucket": 1}
            )
            # The claimer's bucket: a writer of another version may have put the event elsewhere.
            bucket = (marker or {}).get("bucket") or bucket_id(event)
            if marker is None or marker["state"] != "pending":  # applied (or expired)
                await self._unpend(rows, [event], bucket)  # its finisher may have died before this
                return
            if await self._take_over(rows, event, marker.get("epoch"), bucket):
                return
        raise RuntimeError(f"usage event {event.event_id} still pending after {SETTLE_ATTEMPTS} takeovers")

    async def _take_over(self, rows: Any, event: UsageEvent, seen_epoch: int | None, bucket: str) -> bool:
        """Take the pending event at `seen_epoch` to the next epoch (an update with that condition:
        a racing writer makes it match nothing), fence, count and finish it. True if finished."""
        epoch = int(seen_epoch or 0) + 1
        taken = await rows.update_one(
            {"_id": marker_id(event.event_id), "state": "pending", "epoch": seen_epoch},
            {"$set": {"epoch": epoch}},
        )
        if taken.modified_count == 0:
            return False
        fence = {"$max": {_fence(event.event_id): epoch}, "$setOnInsert": {**_dims(event), "pending": []}}
        try:
            await rows.update_one({"_id": bucket}, fence, upsert=True)
        except DuplicateKeyError:  # the bucket was created meanwhile: it exists now
            await rows.update_one({"_id": bucket}, {"$max": fence["$max"]})
        count = self._update(bucket, [event], epoch)
        await rows.update_one(count.filter, count.update)
        return not await self._finish(rows, [event], epoch=epoch, bucket=bucket)

    async def ensure_indexes(self) -> None:
        rows = await self._rows()
        await rows.create_index([("kind", 1), ("org_id", 1), ("hour", 1)])
        await rows.create_index("expire_at", expireAfterSeconds=0)

    async def query(self, match: dict[str, Any], group_by: list[str]) -> dict[str, Any]:
        """Totals over buckets matching `match`, and the same per `group_by` value."""
        rows = await self._rows()
        query = {"kind": BUCKET, **match}
        sums = {f: {"$sum": f"${f}"} for f in SUMS}
        totals = dict.fromkeys(SUMS, 0)
        async for row in rows.aggregate([{"$match": query}, {"$group": {"_id": None, **sums}}]):
            totals.update({f: row[f] for f in SUMS})
        groups: list[dict[str, Any]] = []
        if group_by:
            key = {f: f"${f}" for f in group_by}
            pipeline = [{"$match": query}, {"$group": {"_id": key, **sums}}]
            async for row in rows.aggregate(pipeline):
                groups.append({**{f: row["_id"].get(f) for f in group_by}, **{f: row[f] for f in SUMS}})
            groups.sort(key=lambda g: [str(g[f]) for f in group_by])
        return {"totals": summarize(totals), "groups": [summarize(g) for g in groups]}

    async def tool_calls_since(self, org_id: str, since: datetime) -> int:
        """`tools/call` events reported by services (not the gateway's own) since `since`."""
        rows = await self._rows()
        query = {
            "kind": BUCKET,
            "org_id": org_id,
            "method": "tools/call",
            "service": {"$ne": "gateway"},
            "hour": {"$gte": hour_of(since.timestamp())},
        }
        pipeline = [{"$match": query}, {"$group": {"_id": None, "calls": {"$sum": "$calls"}}}]
        async for row in rows.aggregate(pipeline):
            return int(row["calls"])
        return 0


def summarize(row: dict[str, Any]) -> dict[str, Any]:
    """Integral sums as ints, cost rounded, and the mean latency."""
    out = dict(row)
    for field in SUMS:
        if field in out and field != "llm_cost_usd" and field != "latency_ms_sum":
            out[field] = int(out[field])
    out["llm_cost_usd"] = round(float(out.get("llm_cost_usd", 0)), 6)
    calls = out.get("calls") or 0
    out["latency_ms_avg"] = round(float(out.get("latency_ms_sum", 0)) / calls, 3) if calls else 0.0
    out["latency_ms_sum"] = round(float(out.get("latency_ms_sum", 0)), 3)
    if isinstance(out.get("hour"), datetime):
        out["hour"] = out["hour"].astimezone(UTC).isoformat().replace("+00:00", "Z")
    return out
