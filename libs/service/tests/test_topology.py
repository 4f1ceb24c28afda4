"""Replicas in a queue group, a replica killed mid-load, a NATS restart, downstream calls."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from mcp.server.mcpserver import Context

from mcpmesh.bus import Deadline, connect
from mcpmesh.bus.mcp import exchange, request_body, result_of
from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.service import MeshService, call_of
from mcpmesh.service.testing import ServiceHarness
from mcpmesh.telemetry import capture_spans, tracer
from mcpmesh.tenancy.stamp import StampSigner, generate_signing_key_pem, public_key_pem

ORG = "org-acme"
REPLICA = Path(__file__).with_name("echo_replica.py")


@pytest.fixture
def signing_key() -> str:
    return generate_signing_key_pem()


def start_replicas(n: int, nats_url: str, signing_key: str) -> list[subprocess.Popen[bytes]]:
    env = dict(
        os.environ,
        NATS_URL=nats_url,
        MCPMESH_STAMP_PUBLIC_KEY=public_key_pem(signing_key),
        MCPMESH_ENV="test",
        LOG_LEVEL="WARNING",
    )
    return [subprocess.Popen([sys.executable, str(REPLICA)], env=env) for _ in range(n)]


@pytest.fixture
def replicas(nats_server: LocalNatsServer, signing_key: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = start_replicas(2, nats_server.url_for("svc-echo"), signing_key)
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


async def wait_for_replicas(nats_url: str, n: int) -> None:
    bus = await connect(nats_url, name="probe")
    try:
        for _ in range(300):
            inbox = bus.nc.new_inbox()
            sub = await bus.nc.subscribe(inbox)
            await bus.nc.publish("$SRV.PING.echo", b"", reply=inbox)
            await asyncio.sleep(0.1)
            if sub.pending_msgs >= n:
                await sub.unsubscribe()
                return
            await sub.unsubscribe()
        raise AssertionError(f"{n} echo replicas did not come up")
    finally:
        await bus.close()


async def call_whoami(bus: Any, stamp: str, delay_ms: int, deadline_s: float = 20) -> int:
    body = request_body("tools/call", {"name": "whoami", "arguments": {"delay_ms": delay_ms}})
    reply = await exchange(
        bus, org_id=ORG, service="echo", body=body, stamp=stamp, deadline=Deadline.after(deadline_s)
    )
    result = result_of(reply)
    assert not result.get("isError"), result
    return int(msgspec.json.decode(result["content"][0]["text"])["pid"])


async def test_two_replicas_share_the_load(nats_url: str, signing_key: str, replicas: list[Any]) -> None:
    await wait_for_replicas(nats_url, 2)
    stamp = StampSigner(signing_key).mint(
        org_id=ORG, tier="pro", scopes=["echo:read"], sub="k", service="echo"
    )
    bus = await connect(nats_url, name="caller")
    pids = Counter(await asyncio.gather(*(call_whoami(bus, stamp, 5) for _ in range(200))))
    await bus.close()
    assert set(pids) == {p.pid for p in replicas}
    assert min(pids.values()) >= 40, pids  # both really took a share


async def test_killing_a_replica_mid_load_fails_only_its_in_flight_calls(
    nats_url: str, signing_key: str, replicas: list[Any]
) -> None:
    """Calls the dead replica had taken time out (nothing re-sends work that may have started);
    every other call, before and after the kill, is answered, the later ones by the survivor."""
    await wait_for_replicas(nats_url, 2)
    stamp = StampSigner(signing_key).mint(
        org_id=ORG, tier="pro", scopes=["echo:read"], sub="k", service="echo"
    )
    bus = await connect(nats_url, name="caller")
    concurrency = 20
    sem = asyncio.Semaphore(concurrency)
    killed = asyncio.Event()
    after_kill: list[int] = []

    async def one() -> int:
        async with sem:
            sent_after_kill = killed.is_set()
            pid = await call_whoami(bus, stamp, 20, deadline_s=3)
            if sent_after_kill:
                after_kill.append(pid)
            return pid

    tasks = [asyncio.create_task(one()) for _ in range(300)]
    await asyncio.sleep(0.15)
    victim = replicas[0]
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=5) == -signal.SIGKILL
    await asyncio.sleep(0.1)  # the broker has seen the connection close
    killed.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    await bus.close()
    failures = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(f, MeshException) and f.error.code is ErrorCode.TIMEOUT for f in failures), failures
    assert len(failures) <= concurrency  # only calls the victim had already taken
    answered = Counter(r for r in results if isinstance(r, int))
    assert answered[replicas[1].pid] > 150, answered  # the survivor took over the rest
    assert after_kill and set(after_kill) == {replicas[1].pid}


async def test_sigterm_drains_in_flight_calls(nats_url: str, signing_key: str, replicas: list[Any]) -> None:
    await wait_for_replicas(nats_url, 2)
    stamp = StampSigner(signing_key).mint(
        org_id=ORG, tier="pro", scopes=["echo:read"], sub="k", service="echo"
    )
    bus = await connect(nats_url, name="caller")
    tasks = [asyncio.create_task(call_whoami(bus, stamp, 300)) for _ in range(20)]
    await asyncio.sleep(0.1)
    replicas[0].send_signal(signal.SIGTERM)
    results = await asyncio.gather(*tasks)  # no retries allowed: graceful stop must answer its own calls
    await bus.close()
    assert len(results) == 20
    assert replicas[0].wait(timeout=10) == 0


async def test_nats_restart_is_survived(private_nats: LocalNatsServer) -> None:
    svc = MeshService("echo")

    @svc.tool()
    async def ping() -> str:
        return "pong"

    async with ServiceHarness(svc, private_nats) as harness:
        assert await harness.call_tool(ORG, "ping") == "pong"
        await asyncio.to_thread(private_nats.restart)  # the broker restarts while clients run
        assert await harness.call_tool(ORG, "ping") == "pong"  # both sides reconnected; retried in deadline


async def test_downstream_calls_carry_stamp_and_trace(nats_server: LocalNatsServer) -> None:
    spans = capture_spans()
    llm = MeshService("llm")
    debate = MeshService("debate")
    seen: dict[str, Any] = {}

    @llm.tool()
    async def complete(prompt: str, ctx: Context) -> str:
        call = call_of(ctx)
        seen.update(
            org=call.org_id,
            key_tags=call.key_tags,
            jti=call.stamp.jti,
            sub=call.stamp.sub,
            traceparent=call.headers.get("traceparent"),
            request_id=call.request_id,
        )
        return prompt.upper()

    @debate.tool(access="write")
    async def argue(topic: str, ctx: Context) -> str:
        call = call_of(ctx)
        seen["debate_jti"] = call.stamp.jti
        seen["debate_request_id"] = call.request_id
        result = await call.call_tool("llm", "complete", {"prompt": topic})
        return str(result["content"][0]["text"])

    async with (
        ServiceHarness(debate, nats_server) as front,
        ServiceHarness(llm, nats_server, signing_key_pem=front.signing_key_pem),
    ):
        with tracer("test").start_as_current_span("client") as root:
            stamp = front.stamp(ORG, ["debate:*", "llm:read"], key_tags=["support", "eu"])
            answer = await front.call_tool(ORG, "argue", {"topic": "tabs"}, stamp=stamp)
        trace_id = format(root.get_span_context().trace_id, "032x")
    assert answer == "TABS"
    assert seen["org"] == ORG and seen["sub"] == "key-test"
    assert seen["key_tags"] == frozenset({"support", "eu"})  # the caller's key's tags, two hops on
    assert seen["jti"] == seen["debate_jti"]  # the very same stamp travelled downstream
    assert seen["request_id"] == seen["debate_request_id"]
    assert seen["traceparent"].split("-")[1] == trace_id
    served = [s for s in spans.get_finished_spans() if s.name in ("debate serve", "llm serve")]
    assert {s.context.trace_id for s in served} == {root.get_span_context().trace_id}


async def test_downstream_call_needs_the_callers_scope_for_that_service(
    nats_server: LocalNatsServer,
) -> None:
    llm = MeshService("llm")
    debate = MeshService("debate")

    @llm.tool()
    async def complete(prompt: str) -> str:
        return prompt

    @debate.tool(access="write")
    async def argue(topic: str, ctx: Context) -> str:
        await call_of(ctx).call_tool("llm", "complete", {"prompt": topic})
        return "unreachable"

    async with (
        ServiceHarness(debate, nats_server) as front,
        ServiceHarness(llm, nats_server, signing_key_pem=front.signing_key_pem),
    ):
        from mcpmesh.service.testing import ToolFailed

        with pytest.raises(ToolFailed) as info:
            await front.call_tool(ORG, "argue", {"topic": "x"}, scopes=["debate:*"])
    assert "missing scope 'llm:read'" in info.value.text
