"""The kit end to end on a real nats-server: tenant seen by handlers, and every rejection."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import msgspec
import pytest
from mcp.server.mcpserver import Context

from mcpmesh.bus.mcp import request_body, result_of
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.service import MeshService, ServiceSettings, call_of
from mcpmesh.service.testing import ServiceHarness, ToolFailed
from mcpmesh.tenancy.stamp import ISSUER, StampSigner, generate_signing_key_pem

ORG_A = "org-acme"
ORG_B = "org-globex"


def make_service() -> tuple[MeshService, list[dict[str, Any]]]:
    svc = MeshService("echo")
    seen: list[dict[str, Any]] = []

    @svc.tool(access="read")
    async def whoami(text: str, ctx: Context) -> dict[str, Any]:
        """Echo the text with the tenant the kit handed over."""
        call = call_of(ctx)
        seen.append({"org": call.org_id, "sub": call.stamp.sub, "tier": call.tier})
        return {"org": call.org_id, "text": text}

    @svc.tool(access="write")
    async def store(value: str) -> str:
        seen.append({"store": value})
        return "stored"

    @svc.tool(access="read")
    async def explode() -> str:
        raise RuntimeError("secret internal detail /etc/passwd")

    @svc.tool(access="read")
    async def refuse() -> str:
        raise MeshException(ErrorCode.LIMIT_EXCEEDED, "too many contexts: the free tier allows 100")

    return svc, seen


@pytest.fixture
async def echo(nats_url: str) -> AsyncIterator[tuple[ServiceHarness, list[dict[str, Any]]]]:
    svc, seen = make_service()
    async with ServiceHarness(svc, nats_url) as harness:
        yield harness, seen


async def rejected(harness: ServiceHarness, org: str, body: bytes, stamp: str) -> MeshException:
    reply = await harness.raw(org, body, stamp=stamp)
    with pytest.raises(MeshException) as info:
        result_of(reply)
    return info.value


async def test_tool_call_reaches_handler_with_the_right_tenant(echo: Any) -> None:
    harness, seen = echo
    result = await harness.call_tool(ORG_A, "whoami", {"text": "hi"}, scopes=["echo:read"])
    assert result == {"org": ORG_A, "text": "hi"}
    assert seen == [{"org": ORG_A, "sub": "key-test", "tier": "pro"}]


async def test_tools_list_needs_some_scope_on_the_service(echo: Any) -> None:
    harness, _ = echo
    listed = await harness.request(ORG_A, "tools/list", scopes=["echo:write"])
    assert {t["name"] for t in listed["tools"]} == {"whoami", "store", "explode", "refuse"}
    scopes = {t["name"]: t["_meta"]["mcpmesh/scope"] for t in listed["tools"]}
    assert scopes["whoami"] == "echo:read" and scopes["store"] == "echo:write"
    with pytest.raises(MeshException) as info:
        await harness.request(ORG_A, "tools/list", scopes=["context:*"])
    assert info.value.error.code is ErrorCode.FORBIDDEN


async def test_forged_token_is_rejected_before_any_handler(echo: Any) -> None:
    harness, seen = echo
    forger = StampSigner(generate_signing_key_pem())
    forged = forger.mint(org_id=ORG_A, tier="pro", scopes=["*"], sub="key-evil", service="echo")
    error = await rejected(
        harness, ORG_A, request_body("tools/call", {"name": "whoami", "arguments": {"text": "x"}}), forged
    )
    assert error.error.code is ErrorCode.UNAUTHENTICATED
    assert "invalid tenant stamp" in error.error.message
    assert seen == []


async def test_expired_token_is_rejected(echo: Any) -> None:
    harness, seen = echo
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(harness.signing_key_pem.encode(), password=None)
    now = int(time.time())
    expired = jwt.encode(
        {
            "iss": ISSUER,
            "org_id": ORG_A,
            "tier": "pro",
            "scopes": ["*"],
            "sub": "key-1",
            "aud": ["echo"],
            "iat": now - 600,
            "exp": now - 300,
            "jti": "j1",
        },
        key,
        algorithm="EdDSA",  # type: ignore[arg-type]
    )
    error = await rejected(harness, ORG_A, request_body("tools/list"), expired)
    assert error.error.code is ErrorCode.UNAUTHENTICATED
    assert "expired" in error.error.message
    assert seen == []


async def test_token_of_org_a_on_subject_of_org_b_is_forbidden(echo: Any) -> None:
    harness, seen = echo
    body = request_body("tools/call", {"name": "whoami", "arguments": {"text": "x"}})
    error = await rejected(harness, ORG_B, body, harness.stamp(ORG_A))
    assert error.error.code is ErrorCode.FORBIDDEN
    assert "org does not match" in error.error.message
    assert ORG_A not in error.error.message
    assert seen == []


async def test_wrong_audience_is_forbidden(echo: Any) -> None:
    harness, seen = echo
    other = harness.stamp(ORG_A, service="context")
    error = await rejected(harness, ORG_A, request_body("tools/list"), other)
    assert error.error.code is ErrorCode.FORBIDDEN
    assert "not valid for service 'echo'" in error.error.message
    assert seen == []


async def test_missing_scope_is_forbidden_and_names_the_scope(echo: Any) -> None:
    harness, seen = echo
    with pytest.raises(MeshException) as info:
        await harness.call_tool(ORG_A, "store", {"value": "v"}, scopes=["echo:read"])
    assert info.value.error.code is ErrorCode.FORBIDDEN
    assert "echo:write" in info.value.error.message
    assert seen == []


async def test_invalid_org_id_in_subject_is_rejected(echo: Any) -> None:
    harness, seen = echo
    assert harness.client is not None
    msg = await harness.client.nc.request(
        "mcp.ORG_Evil.echo",
        request_body("tools/list"),
        timeout=5,
        headers={"Mcp-Stamp": harness.stamp(ORG_A)},
    )
    with pytest.raises(MeshException) as info:
        result_of(msg.data)
    assert info.value.error.code is ErrorCode.INVALID_REQUEST
    assert "invalid org id" in info.value.error.message
    assert seen == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "batches are not supported"),
        (b'{"jsonrpc": "1.0", "id": 1, "method": "tools/list"}', "not a JSON-RPC 2.0 request"),
        (b'{"jsonrpc": "2.0", "method": "tools/list"}', "needs an 'id'"),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": [1]}', "'params' must be an object"),
    ],
)
async def test_malformed_payloads_get_clear_errors(echo: Any, body: bytes, expected: str) -> None:
    harness, seen = echo
    error = await rejected(harness, ORG_A, body, harness.stamp(ORG_A))
    assert error.error.code is ErrorCode.INVALID_REQUEST
    assert expected in error.error.message
    assert seen == []


async def test_missing_envelope_is_rejected_by_the_sdk_ladder(echo: Any) -> None:
    harness, seen = echo
    body = msgspec.json.encode({"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {}})
    reply = msgspec.json.decode(await harness.raw(ORG_A, body, stamp=harness.stamp(ORG_A)))
    assert reply["id"] == 7
    assert reply["error"]["code"] == -32602
    assert "protocolVersion" in reply["error"]["message"] or "_meta" in reply["error"]["message"]
    assert seen == []


async def test_unexpected_failure_reaches_client_without_internals(echo: Any) -> None:
    harness, _ = echo
    with pytest.raises(ToolFailed) as info:
        await harness.call_tool(ORG_A, "explode")
    assert "internal error in echo.explode" in info.value.text
    assert "passwd" not in info.value.text and "RuntimeError" not in info.value.text


async def test_mesh_errors_reach_client_as_clear_tool_errors(echo: Any) -> None:
    harness, _ = echo
    with pytest.raises(ToolFailed) as info:
        await harness.call_tool(ORG_A, "refuse")
    assert info.value.text.endswith("limit_exceeded: too many contexts: the free tier allows 100")


async def test_every_call_emits_a_usage_event(echo: Any) -> None:
    harness, _ = echo
    assert harness.client is not None
    sub = await harness.client.nc.subscribe("usage.org-acme.echo")
    await harness.call_tool(ORG_A, "whoami", {"text": "x"}, scopes=["echo:read"], stamp=None)
    with pytest.raises(ToolFailed):
        await harness.call_tool(ORG_A, "refuse")
    events = [msgspec.json.decode((await sub.next_msg(timeout=5)).data) for _ in range(2)]
    await sub.unsubscribe()
    assert [(e["tool"], e["status"]) for e in events] == [("whoami", "ok"), ("refuse", "limit_exceeded")]
    assert all(e["org_id"] == ORG_A and e["key_id"] == "key-test" and e["bytes_out"] > 0 for e in events)
    stream = await harness.client.js.stream_info("USAGE")
    assert stream.state.messages >= 2


async def test_gateway_can_export_and_delete_one_orgs_data(
    nats_url: str, mongo_url: str, mongo_db: Any
) -> None:
    from mcpmesh.proto.events import TenantCommand, TenantDataReply
    from mcpmesh.proto.subjects import tenant_control_subject
    from mcpmesh.store import Index

    svc = MeshService("notes", store_kinds={"notes": [Index(keys=[("n", 1)])]})

    @svc.tool(access="write")
    async def add(n: int, ctx: Context) -> int:
        notes = await call_of(ctx).store.collection("notes")
        await notes.insert_one({"n": n})
        return n

    settings = ServiceSettings(mongodb_url=mongo_url, mongodb_database=mongo_db.name)
    async with ServiceHarness(svc, nats_url, settings=settings) as harness:
        await harness.call_tool(ORG_A, "add", {"n": 1})
        await harness.call_tool(ORG_B, "add", {"n": 2})
        assert harness.client is not None

        async def ask(action: str, org: str) -> TenantDataReply:
            msg = await harness.client.nc.request(  # type: ignore[union-attr]
                tenant_control_subject(action, "notes"),
                msgspec.json.encode(TenantCommand(org_id=org)),
                timeout=5,
            )
            return msgspec.json.decode(msg.data, type=TenantDataReply)

        exported = await ask("export", ORG_A)
        assert exported.export is not None
        assert [d["n"] for d in exported.export["notes"]] == [1]
        dropped = await ask("delete", ORG_A)
        assert dropped.dropped == ["notes"]
        assert (await ask("export", ORG_A)).export == {}
        assert [d["n"] for d in (await ask("export", ORG_B)).export["notes"]] == [2]  # type: ignore[index]
        bad = await ask("delete", "org-X")
        assert bad.error is not None and "invalid org id" in bad.error.message


async def test_a_service_with_store_kinds_needs_a_store_url(nats_url: str) -> None:
    """No in-process fallback: without MONGODB_URL the service refuses to start, saying what to do."""
    from mcpmesh.store import MISSING_URL, Index, StoreNotConfigured

    svc = MeshService("notes", store_kinds={"notes": [Index(keys=[("n", 1)])]})
    with pytest.raises(StoreNotConfigured, match="MONGODB_URL is not set") as refused:
        async with ServiceHarness(svc, nats_url):
            pass
    assert str(refused.value) == MISSING_URL


async def test_start_and_stop_hooks_run_around_serving(nats_url: str) -> None:
    svc = MeshService("hooks")
    events: list[str] = []

    @svc.on_start
    async def opened(service: MeshService) -> None:
        events.append(f"start:{service.bus is not None}")

    @svc.on_stop
    async def closed(service: MeshService) -> None:
        events.append(f"stop:{service.bus is not None and service.bus.connected}")

    @svc.on_stop
    async def broken(service: MeshService) -> None:
        raise RuntimeError("a failing hook must not stop the others")

    @svc.on_stop
    async def last(service: MeshService) -> None:
        events.append("last")

    async with ServiceHarness(svc, nats_url):
        assert events == ["start:True"]
    assert events == ["start:True", "stop:True", "last"]


async def test_a_tool_offered_on_some_tiers_refuses_the_others(nats_url: str) -> None:
    svc = MeshService("tiered")

    @svc.tool(tiers=["enterprise"])
    async def premium() -> str:
        return "gold"

    async with ServiceHarness(svc, nats_url) as harness:
        listed = await harness.request(ORG_A, "tools/list")
        assert listed["tools"][0]["_meta"]["mcpmesh/tiers"] == ["enterprise"]
        assert (
            await harness.call_tool(ORG_A, "premium", stamp=harness.stamp(ORG_A, tier="enterprise")) == "gold"
        )
        with pytest.raises(MeshException) as info:
            await harness.call_tool(ORG_A, "premium", stamp=harness.stamp(ORG_A, tier="free"))
    assert info.value.error.code is ErrorCode.FORBIDDEN
    assert "not available on the 'free' tier" in info.value.error.message
