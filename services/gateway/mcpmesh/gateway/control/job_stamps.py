"""Stamps for durable jobs: a job calls other services as its org for its whole budget.

A service asks on `control.stamps.<service>` (only its own NATS user may publish there, so
the subject names who asks); one gateway replica answers (queue group `gateway`):

- `StampRequest(stamp=, job_id=, budget_s=)` at a job's start: the stamp of the call starting
  it, valid now and minted for this very service (its first audience, not a service it may
  call), of a key still active → a job ticket (`tenancy.tickets`) for that org, key, service
  and job, living the job's budget.
- `StampRequest(ticket=)` while the job runs → a fresh stamp for that service (as the gateway
  mints for a call: short-lived, its audience the service and its callees), with the key's and
  org's *current* scopes, tags and tier — refused once the key is revoked, suspended or expired, or
  the org suspended or deleted.
"""

from __future__ import annotations

import time

import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from mcpmesh.bus import Bus
from mcpmesh.gateway.control.authenticate import Authenticator
from mcpmesh.gateway.control.principal import AuthFailed
from mcpmesh.proto.errors import ErrorCode, MeshError, MeshException
from mcpmesh.proto.ids import InvalidIdentifier
from mcpmesh.proto.jobs import StampReply, StampRequest
from mcpmesh.proto.subjects import GATEWAY_USER, STAMP_REQUESTS, service_of_stamp_request
from mcpmesh.telemetry.logs import get_logger
from mcpmesh.tenancy.stamp import StampSigner, StampVerifier, public_key_pem
from mcpmesh.tenancy.tickets import JobTickets

log = get_logger("mcpmesh.gateway.control")


class JobStampDesk:
    def __init__(self, bus: Bus, auth: Authenticator, signing_key_pem: str, stamp_ttl_s: int) -> None:
        self.bus = bus
        self.auth = auth
        self.signer = StampSigner(signing_key_pem, ttl_s=stamp_ttl_s)
        self.stamps = StampVerifier(public_key_pem(signing_key_pem))
        self.tickets = JobTickets(signing_key_pem)
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self.bus.nc.subscribe(STAMP_REQUESTS, queue=GATEWAY_USER, cb=self._on_request)

    async def stop(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception as exc:  # connection already closed
                log.debug("stamp requests unsubscribe failed", error=repr(exc))
            self._sub = None

    async def _on_request(self, msg: Msg) -> None:
        try:
            reply = await self.answer(msg.subject, msg.data)
        except Exception:  # never leave the asking service waiting for its deadline
            log.exception("stamp request failed")
            reply = StampReply(error=MeshError(ErrorCode.INTERNAL, "the gateway could not answer"))
        try:
            await msg.respond(msgspec.json.encode(reply))
        except Exception as exc:  # the service gave up waiting
            log.warning("stamp reply not sent", error=repr(exc))

    async def answer(self, subject: str, data: bytes) -> StampReply:
        try:
            service = service_of_stamp_request(subject)
            request = msgspec.json.decode(data, type=StampRequest)
        except (InvalidIdentifier, msgspec.DecodeError, msgspec.ValidationError):
            return StampReply(error=MeshError(ErrorCode.INVALID_REQUEST, "malformed stamp request"))
        try:
            if request.ticket is not None:
                return await self._renew(service, request.ticket)
            if request.stamp is not None and request.job_id is not None and request.budget_s:
                return await self._issue(service, request.stamp, request.job_id, request.budget_s)
            raise MeshException(
                ErrorCode.INVALID_REQUEST, "a stamp request needs a ticket, or a stamp, job id and budget"
            )
        except MeshException as exc:
            log.warning("stamp request refused", target=service, reason=exc.error.message)
            return StampReply(error=exc.error)
        except AuthFailed as exc:
            log.warning("stamp request refused", target=service, reason=exc.reason)
            message = f"the key that started the job can no longer be used: {exc.message}"
            return StampReply(error=MeshError(ErrorCode.UNAUTHENTICATED, message))

    async def _issue(self, service: str, token: str, job_id: str, budget_s: float) -> StampReply:
        stamp = self.stamps.verify(token, audience=service)
        if stamp.aud[:1] != [service]:  # a stamp a caller passed on: not this service's own call
            raise MeshException(ErrorCode.FORBIDDEN, f"the stamp was not minted for a call to {service!r}")
        principal = await self.auth.principal_of(stamp.sub)
        if principal.org_id != stamp.org_id:
            raise AuthFailed("unknown")
        ticket = self.tickets.issue(
            org_id=stamp.org_id, sub=stamp.sub, service=service, job_id=job_id, ttl_s=budget_s
        )
        log.info("job ticket issued", target=service, org_id=stamp.org_id, job_id=job_id)
        return StampReply(ticket=ticket)

    async def _renew(self, service: str, token: str) -> StampReply:
        ticket = self.tickets.verify(token, service=service)
        principal = await self.auth.principal_of(ticket.sub)
        if principal.org_id != ticket.org_id:
            raise AuthFailed("unknown")
        stamp = principal.stamp(self.signer, service)
        return StampReply(stamp=stamp, expires_at=time.time() + self.signer.ttl_s)
