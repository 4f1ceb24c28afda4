"""Services discovered through nats.micro, and asking each to delete or export one org's data."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import nats.errors
from nats.micro.service import ServiceVerb, control_subject

from mcpmesh.bus import Bus, Deadline
from mcpmesh.proto.errors import ErrorCode, MeshError, MeshException
from mcpmesh.proto.events import TenantCommand, TenantDataReply
from mcpmesh.proto.ids import InvalidIdentifier, validate_service_name
from mcpmesh.proto.subjects import tenant_control_subject
from mcpmesh.telemetry.logs import get_logger
from mcpmesh.tenancy.commands import CommandSigner

log = get_logger("mcpmesh.gateway.control")

#: The kit registers these endpoints on every service that holds tenant data.
TENANT_ENDPOINTS = frozenset({"tenant-delete", "tenant-export"})


async def discover(bus: Bus, *, wait_s: float = 0.3) -> list[str]:
    """Names of services answering `$SRV.INFO` with the kit's tenant endpoints, sorted."""
    inbox = bus.nc.new_inbox()
    found: set[str] = set()
    sub = await bus.nc.subscribe(inbox)
    try:
        await bus.nc.publish(control_subject(ServiceVerb.INFO), b"", reply=inbox)
        loop = asyncio.get_running_loop()
        end = loop.time() + wait_s
        while (left := end - loop.time()) > 0:
            try:
                msg = await sub.next_msg(timeout=left)
            except nats.errors.TimeoutError:
                break
            name = _tenant_service(msg.data)
            if name:
                found.add(name)
    finally:
        await sub.unsubscribe()
    return sorted(found)


def _tenant_service(data: bytes) -> str | None:
    try:
        info: dict[str, Any] = json.loads(data)
        name = validate_service_name(info.get("name"))
        endpoints = {e.get("name") for e in info.get("endpoints") or [] if isinstance(e, dict)}
    except (ValueError, InvalidIdentifier, AttributeError):
        return None
    return name if endpoints >= TENANT_ENDPOINTS else None


async def ask(
    bus: Bus, signer: CommandSigner, action: str, service: str, org_id: str, *, timeout_s: float
) -> TenantDataReply:
    """One service's answer; a service that fails or does not answer yields a reply with `error`."""
    authorization = signer.authorize(action=action, org_id=org_id, service=service)
    try:
        msg = await bus.request(
            tenant_control_subject(action, service),
            msgspec.json.encode(TenantCommand(org_id=org_id, authorization=authorization)),
            deadline=Deadline.after(timeout_s),
        )
        reply = msgspec.json.decode(msg.data, type=TenantDataReply)
    except MeshException as exc:
        return TenantDataReply(service=service, org_id=org_id, error=exc.error)
    except msgspec.DecodeError:
        error = MeshError(ErrorCode.INTERNAL, f"{service} sent an unreadable {action} reply")
        return TenantDataReply(service=service, org_id=org_id, error=error)
    if reply.org_id != org_id:
        log.error("tenant reply for another org", service=service, action=action)
        error = MeshError(ErrorCode.INTERNAL, f"{service} answered the {action} for another org")
        return TenantDataReply(service=service, org_id=org_id, error=error)
    return reply


async def ask_all(
    bus: Bus,
    signer: CommandSigner,
    action: str,
    services: list[str],
    org_id: str,
    *,
    timeout_s: float = 30.0,
) -> dict[str, TenantDataReply]:
    """Each service's answer, asked in parallel, each with its own signed authorization."""
    replies = await asyncio.gather(
        *(ask(bus, signer, action, s, org_id, timeout_s=timeout_s) for s in services)
    )
    return dict(zip(services, replies, strict=True))
