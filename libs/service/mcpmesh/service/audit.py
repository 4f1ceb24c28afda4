"""A service's entries in the platform audit log: an `AuditEvent` on `audit.<org>.<service>`
(stream AUDIT, which the gateway writes to its `audit` collection). Who (the caller's key id,
from the stamp), what (`<service>.<action>` and its target), the outcome (`ok` or an error code).

The operation has happened when it is recorded: a failure to publish is logged, never raised."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping

import msgspec

from mcpmesh.bus import Bus
from mcpmesh.proto.events import AuditEvent
from mcpmesh.proto.subjects import audit_subject
from mcpmesh.telemetry.logs import get_logger

log = get_logger("mcpmesh.service.audit")


async def record_audit(
    bus: Bus | None,
    *,
    service: str,
    org_id: str,
    actor: str,
    request_id: str | None,
    action: str,
    target: str | None,
    outcome: str,
    detail: Mapping[str, str] | None,
) -> None:
    event = AuditEvent(
        event_id=uuid.uuid4().hex,
        ts=time.time(),
        org_id=org_id,
        actor=actor,
        action=f"{service}.{action}",
        target=target,
        outcome=outcome,
        request_id=request_id,
        detail=dict(detail or {}),
        source=service,
    )
    if bus is None:  # in-process harness: no bus, no audit stream
        return
    try:
        await bus.js.publish(
            audit_subject(org_id, service),
            msgspec.json.encode(event),
            headers={"Nats-Msg-Id": event.event_id},
        )
    except Exception as exc:
        log.error("audit event not published", action=event.action, error=type(exc).__name__)
