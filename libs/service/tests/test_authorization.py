"""Defence in depth behind the broker's permissions: a service acts on a tenant command only
with the gateway's signed authorization for exactly it, and serves a stamp only on the
subject (org and service) it was minted for."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from mcp.server.mcpserver import Context

from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.service import MeshService, ServiceSettings, call_of
from mcpmesh.service.testing import ServiceHarness
from mcpmesh.store import Index
from mcpmesh.tenancy.commands import COMMAND_ISSUER, CommandSigner
from mcpmesh.tenancy.stamp import generate_signing_key_pem, load_signing_key

ACME = "org-acme"
GLOBEX = "org-globex"
KEY = generate_signing_key_pem()


def notes_service(name: str) -> MeshService:
    svc = MeshService(name, store_kinds={"notes": [Index(keys=[("n", 1)])]})

    @svc.tool(access="write")
    async def add(n: int, ctx: Context) -> int:
        notes = await call_of(ctx).store.collection("notes")
        await notes.insert_one({"n": n})
        return n

    @svc.tool(access="read")
    async def whoami(ctx: Context) -> str:
        return call_of(ctx).org_id

    return svc


@pytest.fixture
async def context(nats_server: LocalNatsServer, settings: ServiceSettings) -> AsyncIterator[ServiceHarness]:
    async with ServiceHarness(
        notes_service("context"), nats_server, settings=settings, signing_key_pem=KEY
    ) as harness:
        await harness.call_tool(ACME, "add", {"n": 1})
        yield harness
        await harness.tenant_command("delete", ACME)


async def held(harness: ServiceHarness) -> list[int]:
    reply = await harness.tenant_command("export", ACME)
    assert reply.error is None and reply.export is not None
    return [d["n"] for d in reply.export.get("notes", [])]


def forged(action: str, org: str, service: str, **claims: object) -> str:
    """An authorization as the gateway would sign it, with some claims changed."""
    now = int(time.time())
    body = {
        "iss": COMMAND_ISSUER,
        "sub": "admin",
        "aud": service,
        "act": action,
        "org_id": org,
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
        **claims,
    }
    return jwt.encode(body, load_signing_key(KEY), algorithm="EdDSA")


async def test_an_unsigned_forged_expired_or_misdirected_delete_is_refused(context: ServiceHarness) -> None:
    other_key = CommandSigner(generate_signing_key_pem())
    attempts = {
        "unsigned": ("", ErrorCode.UNAUTHENTICATED, "without an admin authorization"),
        "garbage": ("not-a-jwt", ErrorCode.UNAUTHENTICATED, "invalid tenant command authorization"),
        "another key": (
            other_key.authorize(action="delete", org_id=ACME, service="context"),
            ErrorCode.UNAUTHENTICATED,
            "invalid tenant command authorization",
        ),
        "expired": (
            forged("delete", ACME, "context", iat=int(time.time()) - 600, exp=int(time.time()) - 300),
            ErrorCode.UNAUTHENTICATED,
            "expired",
        ),
        "for an export": (forged("export", ACME, "context"), ErrorCode.FORBIDDEN, "not for delete of"),
        "for another org": (forged("delete", GLOBEX, "context"), ErrorCode.FORBIDDEN, "not for delete of"),
        "for another service": (forged("delete", ACME, "rag"), ErrorCode.FORBIDDEN, "not for service"),
        "a tenant stamp": (context.stamp(ACME), ErrorCode.UNAUTHENTICATED, "invalid tenant command"),
    }
    for what, (token, code, message) in attempts.items():
        reply = await context.tenant_command("delete", ACME, authorization=token)
        assert reply.error is not None, what
        assert reply.error.code is code and message in reply.error.message, (what, reply.error)
        assert reply.dropped == [], what
    assert await held(context) == [1]  # nothing was dropped


async def test_an_authorization_is_used_once(context: ServiceHarness) -> None:
    token = forged("export", ACME, "context")
    first = await context.tenant_command("export", ACME, authorization=token)
    assert first.error is None and first.export is not None
    again = await context.tenant_command("export", ACME, authorization=token)
    assert again.error is not None and "already used" in again.error.message and again.export is None


async def test_the_gateways_authorization_is_obeyed(context: ServiceHarness) -> None:
    assert await held(context) == [1]
    dropped = await context.tenant_command("delete", ACME)
    assert dropped.error is None and dropped.dropped == ["notes"]
    assert await held(context) == []


@pytest.fixture
def settings(mongo_url: str, mongo_db: Any) -> ServiceSettings:
    return ServiceSettings(mongodb_url=mongo_url, mongodb_database=mongo_db.name)


async def test_a_stolen_stamp_replayed_on_another_subject_is_refused(
    nats_server: LocalNatsServer, settings: ServiceSettings
) -> None:
    async with (
        ServiceHarness(
            notes_service("context"), nats_server, settings=settings, signing_key_pem=KEY
        ) as context,
        ServiceHarness(notes_service("rag"), nats_server, settings=settings, signing_key_pem=KEY) as rag,
        ServiceHarness(notes_service("llm"), nats_server, settings=settings, signing_key_pem=KEY) as llm,
    ):
        stolen = context.stamp(ACME)  # minted for mcp.org-acme.context
        assert await context.call_tool(ACME, "whoami", stamp=stolen) == ACME
        replays = {
            "another org, same service": (context, GLOBEX, "the stamp's org does not match"),
            "same org, another service": (rag, ACME, "not valid for service 'rag'"),
            "another org and service": (llm, GLOBEX, "not valid for service 'llm'"),
        }
        for what, (target, org, message) in replays.items():
            with pytest.raises(MeshException) as info:
                await target.call_tool(org, "whoami", stamp=stolen)
            assert info.value.error.code is ErrorCode.FORBIDDEN and message in info.value.error.message, what

        # A stamp minted for debate names the services debate may call on the caller's behalf
        # (llm, context): those accept it, any other service refuses it.
        for_debate = context.stamp(ACME, service="debate")
        assert await llm.call_tool(ACME, "whoami", stamp=for_debate) == ACME
        with pytest.raises(MeshException) as info:
            await rag.call_tool(ACME, "whoami", stamp=for_debate)
        assert "not valid for service 'rag'" in info.value.error.message

        # Nor does a tenant-command authorization pass for a stamp.
        with pytest.raises(MeshException) as info:
            await context.call_tool(ACME, "whoami", stamp=forged("export", ACME, "context"))
        assert info.value.error.code is ErrorCode.UNAUTHENTICATED
