"""Job tickets: what lets a durable job call other services as its org for its whole budget.

A job outlives the stamp of the call that started it (a stamp lives a minute). At the start,
while that stamp is valid, the job's service trades it with the gateway for a ticket: an
EdDSA JWT signed with the gateway's stamp key (issuer `mcpmesh-gateway/job-ticket`, so no
service accepts it as a stamp), bound to the org, the key that started the job (`sub`), the
service running it (`aud`) and the job id, expiring with the job's budget. The service keeps
it with the job and trades it, again with the gateway, for a fresh short-lived stamp whenever
the job needs one (`control.stamps.<service>`, which only that service's NATS user may publish
to); the gateway checks the key and the org are still active each time. So a ticket is good
for one org, through one service, through the gateway only, and no longer than the job.
Only the gateway signs and verifies tickets.
"""

from __future__ import annotations

import time
import uuid
from typing import Final

import jwt
import msgspec

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.proto.ids import InvalidIdentifier, validate_org_id, validate_service_name
from mcpmesh.proto.jobs import is_job_id
from mcpmesh.tenancy.stamp import decode_signed, load_signing_key

TICKET_ISSUER: Final = "mcpmesh-gateway/job-ticket"
#: The longest a ticket lives, whatever a job's budget says.
MAX_TICKET_S: Final = 86_400


class JobTicket(msgspec.Struct, frozen=True, kw_only=True):
    org_id: str
    sub: str  # the key that started the job
    aud: str  # the service running the job
    job: str  # the job id
    exp: int
    iat: int
    jti: str
    iss: str = TICKET_ISSUER


class JobTickets:
    """Held by the gateway (its stamp signing key): issues and verifies job tickets."""

    def __init__(self, signing_key_pem: str, leeway_s: int = 5) -> None:
        self._key = load_signing_key(signing_key_pem)
        self._public = self._key.public_key()
        self.leeway_s = leeway_s

    def issue(self, *, org_id: str, sub: str, service: str, job_id: str, ttl_s: float) -> str:
        if not is_job_id(job_id):
            raise MeshException(ErrorCode.INVALID_REQUEST, "a job ticket needs a job id")
        now = int(time.time())
        claims = {
            "iss": TICKET_ISSUER,
            "org_id": validate_org_id(org_id),
            "sub": sub,
            "aud": validate_service_name(service),
            "job": job_id,
            "iat": now,
            "exp": now + max(1, min(int(ttl_s), MAX_TICKET_S)),
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._key, algorithm="EdDSA")

    def verify(self, token: str, *, service: str) -> JobTicket:
        """The ticket, if it is valid and was issued for a job of `service`; else MeshException."""
        claims = decode_signed(
            token,
            self._public,
            audience=service,
            issuer=TICKET_ISSUER,
            leeway_s=self.leeway_s,
            require=["exp", "iat", "jti", "aud", "sub", "iss"],
            expired="the job's ticket expired: the job ran past its budget",
            wrong_audience=f"the job ticket is not for a job of service {service!r}",
            invalid="invalid job ticket",
        )
        try:
            ticket = msgspec.convert(claims, JobTicket)
            validate_org_id(ticket.org_id)
        except (msgspec.ValidationError, InvalidIdentifier):
            raise MeshException(ErrorCode.UNAUTHENTICATED, "invalid job ticket claims") from None
        return ticket
