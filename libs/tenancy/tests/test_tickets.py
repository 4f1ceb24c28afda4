"""Job tickets: issued and verified by the gateway only, for one org, one service, one job."""

from __future__ import annotations

import time

import jwt
import pytest

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.tenancy.stamp import StampSigner, StampVerifier, generate_signing_key_pem, public_key_pem
from mcpmesh.tenancy.tickets import MAX_TICKET_S, JobTickets

JOB = "0" * 12 + "a" * 16


def test_a_ticket_names_the_org_key_service_and_job_and_lives_the_jobs_budget() -> None:
    tickets = JobTickets(generate_signing_key_pem())
    token = tickets.issue(org_id="org-acme", sub="key-1", service="debate", job_id=JOB, ttl_s=600)
    ticket = tickets.verify(token, service="debate")
    assert (ticket.org_id, ticket.sub, ticket.aud, ticket.job) == ("org-acme", "key-1", "debate", JOB)
    assert 590 <= ticket.exp - int(time.time()) <= 600
    forever = tickets.issue(org_id="org-acme", sub="key-1", service="debate", job_id=JOB, ttl_s=10**9)
    assert tickets.verify(forever, service="debate").exp - int(time.time()) <= MAX_TICKET_S


def test_a_ticket_is_refused_for_another_service_expired_or_signed_by_another_key() -> None:
    signing = generate_signing_key_pem()
    tickets = JobTickets(signing, leeway_s=0)
    token = tickets.issue(org_id="org-acme", sub="key-1", service="debate", job_id=JOB, ttl_s=600)
    with pytest.raises(MeshException) as info:
        tickets.verify(token, service="rag")
    assert info.value.error.code is ErrorCode.FORBIDDEN
    with pytest.raises(MeshException) as info:
        JobTickets(generate_signing_key_pem()).verify(token, service="debate")
    assert info.value.error.code is ErrorCode.UNAUTHENTICATED
    expired = jwt.encode(
        {**jwt.decode(token, options={"verify_signature": False}), "exp": int(time.time()) - 10},
        tickets._key,
        algorithm="EdDSA",
    )
    with pytest.raises(MeshException, match="ticket expired"):
        tickets.verify(expired, service="debate")


def test_a_ticket_is_not_a_stamp_and_a_stamp_is_not_a_ticket() -> None:
    signing = generate_signing_key_pem()
    tickets = JobTickets(signing)
    token = tickets.issue(org_id="org-acme", sub="key-1", service="debate", job_id=JOB, ttl_s=600)
    with pytest.raises(MeshException) as info:
        StampVerifier(public_key_pem(signing)).verify(token, audience="debate")
    assert info.value.error.code is ErrorCode.UNAUTHENTICATED
    stamp = StampSigner(signing).mint(
        org_id="org-acme", tier="pro", scopes=["*"], sub="key-1", service="debate"
    )
    with pytest.raises(MeshException) as info:
        tickets.verify(stamp, service="debate")
    assert info.value.error.code is ErrorCode.UNAUTHENTICATED
    with pytest.raises(MeshException, match="needs a job id"):
        tickets.issue(org_id="org-acme", sub="key-1", service="debate", job_id="nope", ttl_s=600)
