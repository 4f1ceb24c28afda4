"""Usage roll-up: UsageEvents from JetStream into hourly buckets in the `usage` collection.

Buckets: one document per org, key, service, method, tool and hour, `_id` built from
them, summing calls, errors, latency, bytes and LLM tokens/cost.

Exactly once without transactions: each event first gets a marker row
(`_id = "e|<event_id>"`, state `pending`; a duplicate insert means it was seen). A
bucket update adds the event ids to the bucket's `pending` list in the *same* atomic
update that adds their numbers, and only matches if none of them is there yet. Then
the markers turn `applied` and the ids leave `pending`. A redelivered event whose
marker is `pending` is applied only if its id is in no bucket's `pending` list and its
marker is still `pending` after that check; so neither a crash at any step nor two writers
holding the same event (an ack deadline passed mid-batch) lose or double count. Markers expire after
MARKER_TTL_S (longer than the USAGE stream keeps messages).
"""

from __future__ import annotations

import time
import uuid
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
PRUNE_EVERY_S: Final = 3600.0  # embedded store only (see UsageRollup._prune)
DUPLICATE_KEY: Final = 11000
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
    "llm_cost_usd",
)
GROUP_FIELDS: Final = ("org_id", "key_id", "service", "method", "tool", "hour", "day")


def hour_of(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC).replace(minute=0, second=0, microsecond=0)


def bucket_id(event: UsageEvent) -> str:
    hour = hour_of(event.ts).strftime("%Y-%m-%dT%H")
    return "|".join(["h", event.org_id, event.key_id, event.service, event.method, event.tool or "-", hour])


def marker_id(event_id: str) -> str:
    return f"e|{event_id}"


def event_matches_subject(subject: str, event: UsageEvent) -> bool:
    """`usage.<org>.<service>` must name the event's own org and service. Only `svc-<service>`
    may publish on `usage.*.<service>` (broker permissions), so the subject names the publisher."""
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
        "hour": hour,
        "day": hour.strftime("%Y-%m-%d"),
    }


def _embedded(rows: Any) -> bool:
    """The in-process mongomock store (`MONGODB_URL` unset), not a MongoDB server."""
    return any(c.__module__.startswith("mongomock") for c in type(rows).__mro__)  # it masquerades as motor


class UsageRollup:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._next_prune = 0.0

    async def _rows(self) -> Any:
        return await self.store.control("usage")

    async def write(self, events: list[UsageEvent]) -> None:
        """Apply a batch exactly once (see the module docstring); safe to call again with any of it."""
        unique = {e.event_id: e for e in events}
        if not unique:
            return
        rows = await self._rows()
        await self._prune(rows)
        expire_at = now() + timedelta(seconds=MARKER_TTL_S)
        token = uuid.uuid4().hex  # this call's markers, so they can be found without a list of ids
        markers = [
            {
                "_id": marker_id(e.event_id),
                "kind": MARKER,
                "batch": token,
                "org_id": e.org_id,
                "bucket": bucket_id(e),
                "state": "pending",
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
        todo = [e for eid, e in unique.items() if eid not in seen]
        todo += await self._unapplied(rows, [unique[eid] for eid in seen])
        by_bucket: dict[str, list[UsageEvent]] = defaultdict(list)
        for event in todo:
            by_bucket[bucket_id(event)].append(event)
        await self._apply_buckets(rows, by_bucket)
        applied = {"$set": {"state": "applied"}}
        mine = [marker_id(eid) for eid in unique if eid not in seen]
        if mine:  # by id on a server; by token on the embedded store (no index, no O(n²) $in)
            await rows.update_many({"batch": token} if _embedded(rows) else {"_id": {"$in": mine}}, applied)
        if seen:
            await rows.update_many({"_id": {"$in": [marker_id(eid) for eid in seen]}}, applied)
        touched: dict[str, list[str]] = defaultdict(list)
        for event in unique.values():
            touched[bucket_id(event)].append(event.event_id)
        await update_each(
            rows,
            [
                Update({"_id": bucket}, {"$pull": {"pending": {"$in": ids}}})
                for bucket, ids in touched.items()
            ],
        )

    async def _unapplied(self, rows: Any, redelivered: list[UsageEvent]) -> list[UsageEvent]:
        """Of events whose marker existed: those not yet counted in their bucket."""
        if not redelivered:
            return []
        states = {
            m["_id"]: m["state"]
            async for m in rows.find({"_id": {"$in": [marker_id(e.event_id) for e in redelivered]}})
        }
        todo = []
        for event in redelivered:
            if states.get(marker_id(event.event_id)) != "pending":
                continue
            counted = await rows.find_one({"_id": bucket_id(event), "pending": event.event_id}, {"_id": 1})
            if counted is not None:
                continue
            # Not in `pending`: either never applied, or another writer applied it, marked it and
            # pulled it since we read the marker. Ids leave `pending` only after their marker is
            # `applied`, so reading the marker again tells the two apart.
            again = await rows.find_one({"_id": marker_id(event.event_id)}, {"state": 1})
            if again is not None and again.get("state") == "pending":
                todo.append(event)
        return todo

    async def _apply_buckets(self, rows: Any, by_bucket: dict[str, list[UsageEvent]]) -> None:
        """Every bucket's update in one bulk write; a bucket whose update was refused (some id
        already there: a racing writer) is retried event by event."""
        buckets = list(by_bucket)
        refused = await update_each(rows, [self._update(b, by_bucket[b]) for b in buckets])
        for i in sorted(refused):
            group = by_bucket[buckets[i]]
            if len(group) > 1:
                for event in group:
                    await self._apply(rows, buckets[i], [event])

    @staticmethod
    def _update(bucket: str, group: list[UsageEvent]) -> Update:
        """Add the group's numbers and ids to the bucket, only if none of the ids is there yet."""
        ids = [e.event_id for e in group]
        update = {
            "$inc": _deltas(group),
            "$push": {"pending": {"$each": ids}},
            "$setOnInsert": _dims(group[0]),
        }
        return Update({"_id": bucket, "pending": {"$nin": ids}}, update, upsert=True)

    async def _apply(self, rows: Any, bucket: str, group: list[UsageEvent]) -> None:
        one = self._update(bucket, group)
        try:
            await rows.update_one(one.filter, one.update, upsert=True)
        except DuplicateKeyError:  # some id already counted (a racing writer): one event at a time
            if len(group) == 1:
                return
            for event in group:
                await self._apply(rows, bucket, [event])

    async def ensure_indexes(self) -> None:
        rows = await self._rows()
        await rows.create_index([("kind", 1), ("org_id", 1), ("hour", 1)])
        if not _embedded(rows):
            await rows.create_index("expire_at", expireAfterSeconds=0)

    async def _prune(self, rows: Any) -> None:
        """The embedded store has no TTL index (mongomock would scan every document for expiry
        on every insert and query): expired markers are deleted here, at most once an hour."""
        if not _embedded(rows) or time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + PRUNE_EVERY_S
        await rows.delete_many({"kind": MARKER, "expire_at": {"$lt": now()}})

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
