"""The kit end to end on a real nats-server: tenant seen by handlers, and every rejection."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import jwt
import msgspec
import pytest
from mcp.server.mcpserver import Context
from nats.js.api import ConsumerConfig, DeliverPolicy
from typing_extensions import TypedDict

from mcpmesh.bus.mcp import request_body, result_of
from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.service import MeshService, ServiceSettings, call_of
from mcpmesh.service.testing import ServiceHarness, ToolFailed, internals_in, logged_failures
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

    @svc.tool(access="read")
    async def window(last_n: int, entries: list[Entry] | None = None, mode: Literal["a", "b"] = "a") -> int:
        return last_n

    @svc.prompt()
    async def greet(name: str, times: int = 1) -> str:
        return f"Say hello to {name} {times} times"

    @svc.resource("echo://{word}")
    async def word(word: str) -> str:
        return word

    @svc.resource("count://{n}")
    async def count(n: int) -> str:
        if n == 0:
            raise MeshException(ErrorCode.FORBIDDEN, "zero is not yours to read")
        if n > 10:
            raise MeshException(ErrorCode.NOT_FOUND, f"no count {n}: counts go up to 10")
        return str(n)

    return svc, seen


class Entry(TypedDict):
    role: str
    content: str


@pytest.fixture
async def echo(nats_server: LocalNatsServer) -> AsyncIterator[tuple[ServiceHarness, list[dict[str, Any]]]]:
    svc, seen = make_service()
    async with ServiceHarness(svc, nats_server) as harness:
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
    assert {t["name"] for t in listed["tools"]} == {"whoami", "store", "explode", "refuse", "window"}
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
    # Read as the gateway's writers do: from the USAGE stream (only svc-echo may publish there).
    sub = await harness.client.js.pull_subscribe(
        "usage.org-acme.echo", stream="USAGE", config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
    )
    await harness.call_tool(ORG_A, "whoami", {"text": "x"}, scopes=["echo:read"], stamp=None)
    with pytest.raises(ToolFailed):
        await harness.call_tool(ORG_A, "refuse")
    events = []
    while len(events) < 2:
        events += [msgspec.json.decode(m.data) for m in await sub.fetch(2 - len(events), timeout=5)]
    await sub.unsubscribe()
    assert [(e["tool"], e["status"]) for e in events] == [("whoami", "ok"), ("refuse", "limit_exceeded")]
    assert all(e["org_id"] == ORG_A and e["key_id"] == "key-test" and e["bytes_out"] > 0 for e in events)
    stream = await harness.client.js.stream_info("USAGE")
    assert stream.state.messages >= 2


async def test_gateway_can_export_and_delete_one_orgs_data(
    nats_server: LocalNatsServer, mongo_url: str, mongo_db: Any
) -> None:
    from mcpmesh.store import Index

    svc = MeshService("notes", store_kinds={"notes": [Index(keys=[("n", 1)])]})

    @svc.tool(access="write")
    async def add(n: int, ctx: Context) -> int:
        notes = await call_of(ctx).store.collection("notes")
        await notes.insert_one({"n": n})
        return n

    settings = ServiceSettings(mongodb_url=mongo_url, mongodb_database=mongo_db.name)
    async with ServiceHarness(svc, nats_server, settings=settings) as harness:
        await harness.call_tool(ORG_A, "add", {"n": 1})
        await harness.call_tool(ORG_B, "add", {"n": 2})
        ask = harness.tenant_command
        exported = await ask("export", ORG_A)
        assert exported.export is not None
        assert [d["n"] for d in exported.export["notes"]] == [1]
        dropped = await ask("delete", ORG_A)
        assert dropped.dropped == ["notes"]
        assert (await ask("export", ORG_A)).export == {}
        assert [d["n"] for d in (await ask("export", ORG_B)).export["notes"]] == [2]  # type: ignore[index]
        bad = await ask("delete", "org-X", authorization="")
        assert bad.error is not None and "invalid org id" in bad.error.message


async def test_a_service_with_store_kinds_needs_a_store_url(nats_server: LocalNatsServer) -> None:
    """No in-process fallback: without MONGODB_URL the service refuses to start, saying what to do."""
    from mcpmesh.store import MISSING_URL, Index, StoreNotConfigured

    svc = MeshService("notes", store_kinds={"notes": [Index(keys=[("n", 1)])]})
    with pytest.raises(StoreNotConfigured, match="MONGODB_URL is not set") as refused:
        async with ServiceHarness(svc, nats_server):
            pass
    assert str(refused.value) == MISSING_URL


async def test_start_and_stop_hooks_run_around_serving(nats_server: LocalNatsServer) -> None:
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

    async with ServiceHarness(svc, nats_server):
        assert events == ["start:True"]
    assert events == ["start:True", "stop:True", "last"]


async def test_a_tool_offered_on_some_tiers_refuses_the_others(nats_server: LocalNatsServer) -> None:
    svc = MeshService("tiered")

    @svc.tool(tiers=["enterprise"])
    async def premium() -> str:
        return "gold"

    async with ServiceHarness(svc, nats_server) as harness:
        listed = await harness.request(ORG_A, "tools/list")
        assert listed["tools"][0]["_meta"]["mcpmesh/tiers"] == ["enterprise"]
        assert (
            await harness.call_tool(ORG_A, "premium", stamp=harness.stamp(ORG_A, tier="enterprise")) == "gold"
        )
        with pytest.raises(MeshException) as info:
            await harness.call_tool(ORG_A, "premium", stamp=harness.stamp(ORG_A, tier="free"))
    assert info.value.error.code is ErrorCode.FORBIDDEN
    assert "not available on the 'free' tier" in info.value.error.message


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("whoami", {}, "invalid arguments: text: required."),
        ("whoami", {"text": 5}, "invalid arguments: text: expected a string."),
        ("window", {"last_n": "abc"}, "last_n: expected an integer."),
        ("window", {"last_n": 1.5}, "last_n: expected a whole number."),
        ("window", {"last_n": 1e308}, "last_n: expected a smaller integer."),
        ("window", {"last_n": 1, "mode": "c"}, "mode: expected 'a' or 'b'."),
        ("window", {"last_n": 1, "entries": "x" * 10_000}, "entries: expected a list."),
        (
            "window",
            {"last_n": 1, "entries": [{"role": "user", "content": "ok"}, 5, {"role": 1}]},
            "entries[1]: expected an object; entries[2].role: expected a string; entries[2].content: required.",
        ),
        (
            "window",
            {"last_n": None, "entries": [{"role": i} for i in range(10)]},
            "last_n: expected an integer; entries[0].role: expected a string; entries[0].content: required; "
            "entries[1].role: expected a string; entries[1].content: required; and 16 more.",
        ),
    ],
)
async def test_arguments_failing_the_schema_are_told_cleanly(
    echo: Any, caplog: pytest.LogCaptureFixture, tool: str, arguments: dict[str, Any], expected: str
) -> None:
    harness, _ = echo
    caplog.set_level(logging.INFO)
    with pytest.raises(ToolFailed) as info:
        await harness.call_tool(ORG_A, tool, arguments)
    text = info.value.text
    assert text.startswith(f"Error executing tool {tool}: invalid_request: invalid arguments: "), text
    assert expected in text and "input schema" in text, text
    assert internals_in(text) == [] and "x" * 100 not in text, text
    assert logged_failures(caplog.records) == []


async def raw_error(harness: ServiceHarness, method: str, params: dict[str, Any]) -> dict[str, Any]:
    body = request_body(method, params, request_id="r-7")
    reply = msgspec.json.decode(await harness.raw(ORG_A, body, stamp=harness.stamp(ORG_A)))
    assert reply["id"] == "r-7", reply
    error: dict[str, Any] = reply["error"]
    assert internals_in(msgspec.json.encode(error).decode()) == [], error
    return error


async def test_unknown_prompts_and_resources_are_not_found(
    echo: Any, caplog: pytest.LogCaptureFixture
) -> None:
    harness, _ = echo
    caplog.set_level(logging.INFO)
    error = await raw_error(harness, "prompts/get", {"name": "nope"})
    assert error["code"] == -32602 and error["data"]["code"] == "not_found"
    assert error["message"] == "unknown prompt 'nope': prompts/list names this service's prompts"
    error = await raw_error(harness, "resources/read", {"uri": "file:///etc/" + "x" * 5000})
    assert error["code"] == -32602 and error["data"]["code"] == "not_found"
    assert (
        error["message"].startswith("unknown resource 'file:///etc/xxx")
        and "resources/list" in error["message"]
    )
    assert len(error["message"]) < 400 and error["data"]["uri"].startswith("file:///etc/")
    assert logged_failures(caplog.records) == []
    rendered = await harness.request(ORG_A, "prompts/get", {"name": "greet", "arguments": {"name": "Ann"}})
    assert rendered["messages"][0]["content"]["text"] == "Say hello to Ann 1 times"
    assert (await harness.request(ORG_A, "resources/read", {"uri": "echo://hi"}))["contents"][0][
        "text"
    ] == "hi"


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({}, "invalid arguments: name: required."),
        ({"name": "Ann", "tone": "x"}, "invalid arguments: 'tone': not an argument of this prompt."),
        ({"name": "Ann", "times": "many"}, "invalid arguments: times: expected an integer."),
    ],
)
async def test_bad_prompt_arguments_are_invalid_params(
    echo: Any, caplog: pytest.LogCaptureFixture, arguments: dict[str, str], expected: str
) -> None:
    harness, _ = echo
    caplog.set_level(logging.INFO)
    error = await raw_error(harness, "prompts/get", {"name": "greet", "arguments": arguments})
    assert error["code"] == -32602 and error["data"]["code"] == "invalid_request"
    assert error["message"].startswith(expected), error
    assert logged_failures(caplog.records) == []


@pytest.mark.parametrize(
    ("method", "params", "expected"),
    [
        (
            "tools/call",
            {"name": "whoami", "arguments": "x"},
            "tools/call needs params.arguments to be an object",
        ),
        ("tools/call", {"name": 5}, "tools/call needs params.name to be a string"),
        ("resources/read", {"uri": 5}, "resources/read needs params.uri to be a string"),
        ("prompts/get", {}, "prompts/get needs params.name to be a string"),
        ("prompts/get", {"name": "greet", "arguments": {"name": 5}}, "must map argument names to strings"),
        ("tools/list", {"cursor": 5}, "tools/list needs params.cursor to be a string"),
    ],
)
async def test_params_of_the_wrong_type_are_named(
    echo: Any, method: str, params: dict[str, Any], expected: str
) -> None:
    harness, seen = echo
    error = await raw_error(harness, method, params)
    assert error["code"] == -32602 and error["data"]["code"] == "invalid_request"
    assert expected in error["message"]
    assert seen == []


@pytest.mark.parametrize(
    ("uri", "code", "mesh_code", "message"),
    [
        ("count://11", -32602, "not_found", "no count 11: counts go up to 10"),
        ("count://0", -32003, "forbidden", "zero is not yours to read"),
        ("count://many", -32602, "invalid_request", "invalid arguments: n: expected an integer."),
    ],
)
async def test_resource_functions_refuse_with_mesh_errors(
    echo: Any, caplog: pytest.LogCaptureFixture, uri: str, code: int, mesh_code: str, message: str
) -> None:
    harness, _ = echo
    caplog.set_level(logging.INFO)
    error = await raw_error(harness, "resources/read", {"uri": uri})
    assert error["code"] == code and error["data"]["code"] == mesh_code, error
    assert error["message"].startswith(message), error
    assert logged_failures(caplog.records) == []
    assert (await harness.request(ORG_A, "resources/read", {"uri": "count://3"}))["contents"][0][
        "text"
    ] == "3"


async def test_tools_publish_their_annotations_and_idempotency_key(nats_server: LocalNatsServer) -> None:
    svc = MeshService("annotated")

    @svc.tool(access="read", open_world=False)
    async def look() -> str:
        return "seen"

    @svc.tool(access="write")
    async def add(item: str) -> str:
        return item

    @svc.tool(access="write", idempotent=True, destructive=True, open_world=False)
    async def put(key: str, value: str) -> str:
        return value

    @svc.tool(access="write", destructive=False, idempotency_key="op_id")
    async def charge(amount: int, op_id: str | None = None) -> int:
        return amount

    async with ServiceHarness(svc, nats_server) as harness:
        listed = await harness.request(ORG_A, "tools/list")
    tools = {t["name"]: t for t in listed["tools"]}
    hints = {name: t["annotations"] for name, t in tools.items()}
    assert hints["look"] == {
        "readOnlyHint": True,
        "idempotentHint": True,
        "destructiveHint": False,
        "openWorldHint": False,
    }
    # Undeclared hints of a write tool are the conservative MCP defaults.
    assert hints["add"] == {
        "readOnlyHint": False,
        "idempotentHint": False,
        "destructiveHint": True,
        "openWorldHint": True,
    }
    assert hints["put"]["idempotentHint"] is True and hints["put"]["destructiveHint"] is True
    assert hints["charge"]["idempotentHint"] is False and hints["charge"]["destructiveHint"] is False
    assert tools["charge"]["_meta"]["mcpmesh/idempotency_key"] == "op_id"
    assert "mcpmesh/idempotency_key" not in tools["add"]["_meta"]


def test_annotations_that_cannot_be_true_are_refused_at_declaration() -> None:
    svc = MeshService("annotated")
    with pytest.raises(ValueError, match="not an argument"):

        @svc.tool(access="write", idempotency_key="request_key")
        async def charge(amount: int) -> int:
            return amount

    with pytest.raises(ValueError, match="read_only"):
        svc.tool(access="read", destructive=True)
    with pytest.raises(TypeError, match="read_only="):
        svc.tool(access="read", annotations={"readOnlyHint": True})


async def test_each_replica_also_answers_on_its_own_subject(nats_server: LocalNatsServer) -> None:
    from mcpmesh.bus import Deadline, NotDelivered
    from mcpmesh.bus.mcp import exchange

    svc, _ = make_service()
    async with ServiceHarness(svc, nats_server) as harness:
        assert harness.server is not None and harness.server.micro is not None and harness.client is not None
        body = request_body("tools/call", {"name": "whoami", "arguments": {"text": "direct"}})
        reply = await exchange(
            harness.client,
            org_id=ORG_A,
            service="echo",
            body=body,
            stamp=harness.stamp(ORG_A),
            deadline=Deadline.after(5),
            instance=harness.server.micro.id,
        )
        assert result_of(reply)["structuredContent"] == {"org": ORG_A, "text": "direct"}
        with pytest.raises(NotDelivered):  # no such replica: handed back unsent at once
            await exchange(
                harness.client,
                org_id=ORG_A,
                service="echo",
                body=body,
                stamp=harness.stamp(ORG_A),
                deadline=Deadline.after(5),
                instance="gone0replica",
            )


async def test_a_write_stopped_at_its_deadline_says_it_may_have_been_applied(
    nats_server: LocalNatsServer,
) -> None:
    import asyncio

    from mcpmesh.bus import Deadline
    from mcpmesh.proto import headers as h

    svc = MeshService("slowpoke")

    @svc.tool(access="write")
    async def save(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "saved"

    @svc.tool(access="read")
    async def look(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "seen"

    async def stopped(harness: ServiceHarness, tool: str) -> MeshException:
        """The kit's own answer: the caller waits longer than the deadline it sends."""
        assert harness.client is not None
        headers = {
            h.STAMP: harness.stamp(ORG_A),
            h.REQUEST_ID: "r1",
            h.DEADLINE: Deadline.after(0.3).header(),
        }
        body = request_body("tools/call", {"name": tool, "arguments": {"seconds": 5}})
        msg = await harness.client.nc.request("mcp.org-acme.slowpoke", body, timeout=5, headers=headers)
        with pytest.raises(MeshException) as info:
            result_of(msg.data)
        assert info.value.error.code is ErrorCode.TIMEOUT
        return info.value

    async with ServiceHarness(svc, nats_server) as harness:
        write = await stopped(harness, "save")
        read = await stopped(harness, "look")
    assert write.error.retryable is False
    assert write.error.message == (
        "slowpoke.save did not finish before its deadline and was stopped: it may have been applied; "
        "check the current state before retrying"
    )
    assert read.error.retryable is True
