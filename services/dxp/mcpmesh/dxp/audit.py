"""Production operations into the platform audit log: an `AuditEvent` on `audit.<org>.dxp`
(stream AUDIT, which the gateway writes to its `audit` collection). Who (the key id in the
stamp), what (action, project, environment), the result (`ok`, `refused` or the error code)."""

from __future__ import annotations

import time
import uuid

import msgspec
import structlog

from mcpmesh.proto.events import AuditEvent
from mcpmesh.proto.subjects import audit_subject
from mcpmesh.service import Call

log = structlog.get_logger("mcpmesh.dxp.audit")
SOURCE = "dxp"


async def record(call: Call, action: str, target: str, outcome: str, detail: dict[str, str]) -> None:
    event = AuditEvent(
        event_id=uuid.uuid4().hex,
        ts=time.time(),
        org_id=call.org_id,
        actor=call.stamp.sub,
        action=f"dxp.{action}",
        target=target,
        outcome=outcome,
        request_id=call.request_id,
        detail=detail,
        source=SOURCE,
    )
    if call.bus is None:  # in-process harness: no bus, no audit stream
        return
    try:
        await call.bus.js.publish(
            audit_subject(call.org_id, SOURCE),
            msgspec.json.encode(event),
            headers={"Nats-Msg-Id": event.event_id},
        )
    except Exception as exc:  # the operation happened: say so in the log, never fail it
        log.error("audit event not published", action=event.action, error=type(exc).__name__)
