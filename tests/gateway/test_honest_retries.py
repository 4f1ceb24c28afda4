"""Honest retries and routing: work that started is never run twice behind the client's back;
a timed-out write says it may have been applied; a paused replica is routed around; a known
service that cannot answer is a 503 with Retry-After, never "unknown"; one discovery round
serves every caller that waits for it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcpmesh.service import MeshService, ServiceSettings
from mcpmesh.tenancy.stamp import public_key_pem

REPLICA = Path(__file__).with_name("logs_replica.py")


def call(name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "arguments": arguments or {}}


def counting_service(runs: list[str]) -> MeshService:
    """`rag` tools that record every execution (the service side of "ran exactly once")."""
    svc = MeshService("rag")

    @svc.tool(access="read", open_world=False)
    async def slow_read(seconds: float) -> str:
        """Read-only, slow."""
        runs.append("slow_read")
        await asyncio.sleep(seconds)
        return "read done"

    @svc.tool(access="write", open_world=False)
    async def slow_write(seconds: float) -> str:
        """A write that is not idempotent and has no idempotency key."""
        runs.append("slow_write")
        await asyncio.sleep(seconds)
        return "written"

    @svc.tool(access="write", destructive=False, open_world=False, idempotency_key="op_id")
    async def keyed_write(seconds: float, op_id: str | None = None) -> str:
        """A write a client may resend with the same op_id."""
        runs.append(f"keyed_write:{op_id}")
        await asyncio.sleep(seconds)
        return "written once"

    return svc


async def test_a_7_s_read_only_tool_runs_exactly_once_and_answers(mesh: Any) -> None:
    runs: list[str] = []
    await mesh.service(counting_service(runs))
    gw = await mesh.gateway()  # the default 30 s call deadline
    await mesh.wait_discovered("rag")
    _org, key = await mesh.tenant(scopes=["rag:read"])
    status, body, _ = await gw.rpc("tools/call", call("rag_slow_read", {"seconds": 7}), key=key)
    assert status == 200, body
    assert body["result"]["structuredContent"] == {"result": "read done"}
    assert runs == ["slow_read"]


async def test_a_timed_out_write_says_it_may_have_been_applied_and_ran_once(mesh: Any) -> None:
    runs: list[str] = []
    await mesh.service(counting_service(runs))
    gw = await mesh.gateway(max_call_s=1.0)
    await mesh.wait_discovered("rag")
    _org, key = await mesh.tenant(scopes=["rag:*"])

    status, body, _ = await gw.rpc("tools/call", call("rag_slow_write", {"seconds": 3}), key=key)
    assert status == 504, body
    error = body["error"]
    assert error["data"]["code"] == "timeout"
    assert error["data"]["retryable"] is False and error["data"]["details"]["may_have_applied"] is True
    assert "tool 'rag_slow_write' may have been applied" in error["message"]
    assert "check the current state before retrying" in error["message"]

    # With the tool's idempotency key given, resending is safe, and the error says how.
    status, body, _ = await gw.rpc(
        "tools/call", call("rag_keyed_write", {"seconds": 3, "op_id": "op-1"}), key=key
    )
    assert status == 504, body
    assert body["error"]["data"]["retryable"] is True
    assert body["error"]["data"]["details"]["idempotency_key"] == "op_id"
    assert "resend it with the same 'op_id'" in body["error"]["message"]
    # ... and without the key, it is not, and the error says which argument would make it so.
    status, body, _ = await gw.rpc("tools/call", call("rag_keyed_write", {"seconds": 3}), key=key)
    assert status == 504 and body["error"]["data"]["retryable"] is False
    assert "pass 'op_id' so that a retry is applied at most once" in body["error"]["message"]

    # A read-only tool that timed out is safe to retry, and says so.
    status, body, _ = await gw.rpc("tools/call", call("rag_slow_read", {"seconds": 3}), key=key)
    assert status == 504 and body["error"]["data"]["retryable"] is True
    assert "retrying it is safe" in body["error"]["message"]

    await asyncio.sleep(2.5)  # long enough for any re-sent attempt to have run
    assert runs == ["slow_write", "keyed_write:op-1", "keyed_write:None", "slow_read"]


async def test_a_write_the_service_stopped_at_its_deadline_may_have_been_applied(mesh: Any) -> None:
    runs: list[str] = []
    await mesh.service(counting_service(runs), ServiceSettings(max_call_s=0.5))  # its own, shorter cap
    gw = await mesh.gateway()
    await mesh.wait_discovered("rag")
    _org, key = await mesh.tenant(scopes=["rag:*"])
    status, body, _ = await gw.rpc("tools/call", call("rag_slow_write", {"seconds": 3}), key=key)
    assert status == 504, body
    assert body["error"]["data"]["retryable"] is False
    assert body["error"]["message"] == (
        "service 'rag' did not finish in time: tool 'rag_slow_write' may have been applied; "
        "check the current state before retrying"
    )
    assert runs == ["slow_write"]


# -- a paused replica ------------------------------------------------------------------------------


@pytest.fixture
def start_replicas(mesh: Any) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(n: int) -> list[subprocess.Popen[bytes]]:
        env = dict(
            os.environ,
            NATS_URL=mesh.nats.url_for("svc-logs"),  # the replica connects as its own user
            MCPMESH_STAMP_PUBLIC_KEY=public_key_pem(mesh.signing_pem),
            MCPMESH_ENV="test",
            LOG_LEVEL="WARNING",
        )
        started = [subprocess.Popen([sys.executable, str(REPLICA)], env=env) for _ in range(n)]
        procs.extend(started)
        return started

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        proc.wait()


async def wait_replicas(gw: Any, service: str, n: int) -> None:
    for _ in range(200):
        view = gw.state.discovery.views.get(service)
        if view is not None and len(view.healthy) == n:
            return
        await gw.state.discovery.refresh()
        await asyncio.sleep(0.05)
    raise AssertionError(f"{n} healthy {service} replicas were not discovered")


async def test_a_paused_replica_is_ejected_a_service_with_none_left_is_503_and_it_comes_back(
    mesh: Any, start_replicas: Any
) -> None:
    first, second = start_replicas(2)
    gw = await mesh.gateway(max_call_s=2.0, health_interval_s=0.5)
    await wait_replicas(gw, "logs", 2)
    _org, key = await mesh.tenant(scopes=["logs:read"])
    statuses: list[int] = []

    async def whoami() -> tuple[int, Any, Any]:
        """(status, the serving replica's pid or the error body, headers)"""
        status, body, headers = await gw.rpc("tools/call", call("logs_whoami"), key=key)
        statuses.append(status)
        return status, body["result"]["structuredContent"]["pid"] if status == 200 else body, headers

    served = {(await whoami())[1] for _ in range(30)}
    assert served == {first.pid, second.pid}

    async def until(predicate: Any, what: str, *, times: int = 1, tries: int = 60) -> tuple[int, Any, Any]:
        """Call until `predicate(status, pid_or_body)` held `times` calls in a row, within `tries` calls."""
        in_a_row = 0
        for _ in range(tries):
            status, got, headers = await whoami()
            in_a_row = in_a_row + 1 if predicate(status, got) else 0
            if in_a_row == times:
                return status, got, headers
            if not in_a_row:
                await asyncio.sleep(0.1)
        raise AssertionError(f"{what}: last {status} {got}")

    # One replica paused: within seconds, every call is served by the other (without ejection,
    # NATS would hand it every other call and each would wait out the deadline).
    first.send_signal(signal.SIGSTOP)
    await until(lambda s, pid: s == 200 and pid == second.pid, "calls served around the paused one", times=15)

    # Both paused: the service is known, so 503 with Retry-After, never "unknown tool".
    second.send_signal(signal.SIGSTOP)
    status, body, headers = await until(lambda s, _: s == 503, "503 once no replica answers")
    assert int(headers["Retry-After"]) >= 1
    assert body["error"]["data"]["code"] == "unavailable" and body["error"]["data"]["retryable"] is True
    assert "service 'logs' is unavailable: no replica is answering health checks" in body["error"]["message"]
    status, listed, _ = await gw.rpc("tools/list", key=key)  # its cached tools are still listed
    assert status == 200 and "logs_whoami" in {t["name"] for t in listed["result"]["tools"]}

    # SIGCONT: the replica is healthy again and takes calls.
    first.send_signal(signal.SIGCONT)
    await until(lambda s, pid: s == 200 and pid == first.pid, "the resumed replica serves again", times=10)
    second.send_signal(signal.SIGCONT)
    await wait_replicas(gw, "logs", 2)
    await until(lambda s, pid: s == 200 and pid == second.pid, "both replicas serve again", tries=100)

    assert 400 not in statuses and 404 not in statuses  # never "unknown tool" / "no service"
    assert set(statuses) <= {200, 503, 504}


# -- discovery is single-flight --------------------------------------------------------------------


async def test_forty_calls_meeting_an_undiscovered_service_share_one_refresh(mesh: Any) -> None:
    gw = await mesh.gateway(discovery_interval_s=3600, health_interval_s=3600)
    _org, key = await mesh.tenant(scopes=["logs:read"])
    await mesh.logs()  # started after the gateway's last discovery round
    await asyncio.sleep(1.1)  # past the one-refresh-a-second guard for unknown names
    discovery = gw.state.discovery
    assert not discovery.has("logs")
    rounds = discovery.rounds
    results = await asyncio.gather(
        *(gw.rpc("tools/call", call("logs_tail", {"lines": 1}), key=key) for _ in range(40))
    )
    assert [status for status, _, _ in results] == [200] * 40, [b for s, b, _ in results if s != 200][:1]
    assert discovery.rounds == rounds + 1
