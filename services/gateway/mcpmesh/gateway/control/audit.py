"""Audit: AuditEvents published on `audit.<org>.gateway` (stream AUDIT), written append-only
into the `audit` control collection (`_id` = event id, so a redelivery is a no-op), and queried.
"""

from __future__ import annotations

import base64
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from pymongo.errors import BulkWriteError

from mcpmesh.bus import Bus
from mcpmesh.gateway.control.errors import bad_request
from mcpmesh.gateway.control.validation import iso
from mcpmesh.proto.events import AuditEvent
from mcpmesh.proto.ids import InvalidIdentifier, validate_org_id
from mcpmesh.proto.subjects import audit_subject, org_and_name
from mcpmesh.store import Store

DUPLICATE_KEY: Final = 11000
ADMIN: Final = "admin"


def new_event(
    org_id: str,
    *,
    actor: str,
    action: str,
    outcome: str,
    target: str | None = None,
    request_id: str | None = None,
    detail: dict[str, str] | None = None,
    source: str = "gateway",
) -> AuditEvent:
    return AuditEvent(
        event_id=uuid.uuid4().hex,
        ts=time.time(),
        org_id=org_id,
        actor=actor,
        action=action,
        target=target,
        outcome=outcome,
        request_id=request_id,
        detail=detail or {},
        source=source,
    )


async def publish(bus: Bus, event: AuditEvent) -> None:
    """Into JetStream (the event id is the Nats-Msg-Id, so a retried publish is stored once)."""
    await bus.js.publish(
        audit_subject(event.org_id, event.source),
        msgspec.json.encode(event),
        headers={"Nats-Msg-Id": event.event_id},
    )


async def publish_nowait(bus: Bus, event: AuditEvent) -> None:
    """With core NATS, no JetStream ack awaited (the hot path's key-use events). The AUDIT
    stream captures the subject; the Nats-Msg-Id header makes it drop a copy re-sent within
    its duplicate window, and the writer's `_id` drops any later one. Raises if the connection
    is closed or its outbound buffer is full; `mcpmesh.bus.flush(bus.nc)` confirms the server read it."""
    await bus.nc.publish(
        audit_subject(event.org_id, event.source),
        msgspec.json.encode(event),
        headers={"Nats-Msg-Id": event.event_id},
    )


def event_matches_subject(subject: str, event: AuditEvent) -> bool:
    """`audit.<org>.<source>` must name the event's own org and source. Only the source's own
    NATS user may publish on its subjects, so the subject vouches for who recorded the event."""
    try:
        return org_and_name(subject, "audit") == (validate_org_id(event.org_id), event.source)
    except InvalidIdentifier:
        return False


def _row(event: AuditEvent) -> dict[str, Any]:
    return {
        "_id": event.event_id,
        "org_id": event.org_id,
        "ts": datetime.fromtimestamp(event.ts, UTC),
        "actor": event.actor,
        "action": event.action,
        "target": event.target,
        "outcome": event.outcome,
        "request_id": event.request_id,
        "detail": dict(event.detail),
        "source": event.source,
    }


def audit_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["_id"],
        "org_id": row["org_id"],
        "ts": iso(row["ts"]),
        "actor": row["actor"],
        "action": row["action"],
        "target": row.get("target"),
        "outcome": row["outcome"],
        "request_id": row.get("request_id"),
        "detail": row.get("detail") or {},
    }


def encode_cursor(row: dict[str, Any]) -> str:
    ts = row["ts"] if row["ts"].tzinfo else row["ts"].replace(tzinfo=UTC)
    raw = f"{ts.timestamp():.6f}|{row['_id']}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts, _, event_id = raw.partition("|")
        return datetime.fromtimestamp(float(ts), UTC), event_id
    except (ValueError, UnicodeDecodeError):
        raise bad_request("invalid 'cursor': pass the next_cursor of a previous page unchanged") from None


class AuditLog:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def _rows(self) -> Any:
        return await self.store.control("audit")

    async def ensure_indexes(self) -> None:
        rows = await self._rows()
        await rows.create_index([("org_id", 1), ("ts", -1), ("_id", -1)])
        await rows.create_index([("ts", -1), ("_id", -1)])

    async def write(self, events: list[AuditEvent]) -> None:
        """Append; an event already stored (a redelivery) is skipped. Rows are never updated."""
        rows = await self._rows()
        docs = [_row(e) for e in {e.event_id: e for e in events}.values()]
        try:
            await rows.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            if any(err.get("code") != DUPLICATE_KEY for err in exc.details.get("writeErrors", [])):
                raise

    async def query(
        self, match: dict[str, Any], limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first; `cursor` continues after the last row of the previous page."""
        query = dict(match)
        if cursor:
            ts, event_id = decode_cursor(cursor)
            query["$or"] = [{"ts": {"$lt": ts}}, {"ts": ts, "_id": {"$lt": event_id}}]
        rows = await self._rows()
        found = [r async for r in rows.find(query).sort([("ts", -1), ("_id", -1)]).limit(limit + 1)]
        page = found[:limit]
        next_cursor = encode_cursor(page[-1]) if len(found) > limit else None
        return [audit_view(r) for r in page], next_cursor
