"""A job's stamps for calling other services as its org, for its whole budget (`tenancy.tickets`).

At the start, while the starting call's stamp is valid, the service trades it with the gateway
for a ticket bound to the org, the key, this service and the job, living the job's budget; the
ticket is kept in the job's record (and dropped when the job finishes) so a resumed run on
another replica has it too. Whenever the job calls another service and holds no stamp with
`REFRESH_S` left, the ticket is traded for a fresh one. Only for services that call others
(`tenancy.stamp.DOWNSTREAM`): no other has the NATS permission to ask.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

import msgspec

from mcpmesh.bus import Deadline
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.proto.jobs import StampReply, StampRequest
from mcpmesh.proto.subjects import stamp_request_subject
from mcpmesh.tenancy.stamp import DOWNSTREAM

if TYPE_CHECKING:
    from mcpmesh.service.call import Call
    from mcpmesh.service.server import MeshService

#: A stamp with less than this left is renewed before a call (a callee checks it on arrival).
REFRESH_S: Final = 10.0
#: The longest the gateway is waited for.
_ASK_S: Final = 10.0


class JobStamps:
    def __init__(self, service: MeshService) -> None:
        self.service = service

    @property
    def calls_others(self) -> bool:
        return bool(DOWNSTREAM.get(self.service.name)) and self.service.bus is not None

    async def ticket(self, call: Call, job_id: str, budget_s: float) -> str | None:
        """The ticket of a job starting now, if this service calls other services."""
        if not self.calls_others:
            return None
        reply = await self._ask(StampRequest(stamp=call.token, job_id=job_id, budget_s=budget_s))
        if not reply.ticket:
            raise MeshException(ErrorCode.INTERNAL, "the gateway sent no ticket for the job")
        return reply.ticket

    async def stamp(self, ticket: str | None) -> tuple[str, float]:
        """A fresh stamp for a job holding `ticket`, and when it expires (unix seconds)."""
        if ticket is None:
            raise MeshException(
                ErrorCode.FORBIDDEN,
                f"jobs of {self.service.name!r} cannot call other services: it calls none "
                "(tenancy.stamp.DOWNSTREAM), or the job started before it did",
            )
        reply = await self._ask(StampRequest(ticket=ticket))
        if not reply.stamp:
            raise MeshException(ErrorCode.INTERNAL, "the gateway sent no stamp for the job")
        return reply.stamp, reply.expires_at or time.time()

    async def _ask(self, request: StampRequest) -> StampReply:
        bus = self.service.bus
        if bus is None:
            raise MeshException(ErrorCode.UNAVAILABLE, "no bus in this run: a job cannot call other services")
        try:
            msg = await bus.request(
                stamp_request_subject(self.service.name),
                msgspec.json.encode(request),
                deadline=Deadline.after(_ASK_S),
            )
            reply = msgspec.json.decode(msg.data, type=StampReply)
        except MeshException as exc:
            raise MeshException(
                exc.error.code,
                "the gateway did not answer for the job's stamp: retry later",
                retryable=exc.error.retryable,
            ) from None
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise MeshException(
                ErrorCode.INTERNAL, "the gateway's answer for the job's stamp was malformed"
            ) from None
        if reply.error is not None:
            raise MeshException.of(reply.error)
        return reply
