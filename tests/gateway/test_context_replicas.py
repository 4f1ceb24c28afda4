"""Two mcp-context replicas (real processes, started as `./mesh up` starts them) behind one
gateway, on the shared store: one replica is killed in the middle of a steady append + get
load, and no acknowledged append is lost, doubled or out of place."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .conftest import Gateway, Mesh
from .replica_procs import start_service, stop_all, wait_for_replicas

WORKERS = 4


def call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


def start_replica(mesh: Mesh, log: Path) -> subprocess.Popen[bytes]:
    """`python -m mcpmesh.context`, as `./mesh up` starts it."""
    argv = [sys.executable, "-m", "mcpmesh.context"]
    return start_service(
        mesh, "context", argv, log, database=mesh.database + "_ctx", CONTEXT_SWEEP_INTERVAL_S="0"
    )


@pytest.fixture
async def replicas(mesh: Mesh, tmp_path: Path) -> AsyncIterator[list[subprocess.Popen[bytes]]]:
    procs = [start_replica(mesh, tmp_path / f"context-{i}.log") for i in range(2)]
    yield procs
    await stop_all(procs)


@dataclass
class Load:
    """Appends (and windowed gets) from a few concurrent clients, each call timed and kept."""

    gw: Gateway
    key: str
    ctx_id: str
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    acked: dict[str, int] = field(default_factory=dict)  # content -> seq the reply gave it
    failed: list[tuple[float, str, Any]] = field(default_factory=list)  # (started, what, reply)
    gets_ok: int = 0

    async def worker(self, w: int) -> None:
        i = 0
        while not self.stop.is_set():
            content = f"w{w}-{i}"
            i += 1
            started = time.monotonic()
            args = {"ctx_id": self.ctx_id, "role": "user", "content": content}
            status, body, _ = await self.gw.rpc("tools/call", call("context_append", args), key=self.key)
            result = body.get("result") if status == 200 and isinstance(body, dict) else None
            if result is not None and not result.get("isError"):
                self.acked[content] = result["structuredContent"]["first_seq"]
            else:
                self.failed.append((started, f"append {content}", (status, body)))
            if i % 3 == 0:
                started = time.monotonic()
                args = {"ctx_id": self.ctx_id, "last_n": 5}
                status, body, _ = await self.gw.rpc("tools/call", call("context_get", args), key=self.key)
                result = body.get("result") if status == 200 and isinstance(body, dict) else None
                if result is not None and not result.get("isError"):
                    self.gets_ok += 1
                else:
                    self.failed.append((started, "get", (status, body)))

    async def until_acked(self, n: int) -> None:
        for _ in range(3000):
            if len(self.acked) >= n:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"only {len(self.acked)} appends acknowledged: {self.failed[:3]}")


async def read_all(gw: Gateway, key: str, ctx_id: str) -> list[dict[str, Any]]:
    """Every visible entry, oldest first, paging by after_seq."""
    entries: list[dict[str, Any]] = []
    after = -1
    while True:
        args = {"ctx_id": ctx_id, "after_seq": after}
        status, body, _ = await gw.rpc("tools/call", call("context_get", args), key=key)
        assert status == 200 and not body["result"].get("isError"), body
        page = body["result"]["structuredContent"]
        entries += page["entries"]
        if not page["window"]["truncated"]:
            return entries
        after = page["window"]["next_after_seq"]


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
async def test_a_replica_killed_mid_load_loses_no_acknowledged_append(
    mesh: Mesh, replicas: list[subprocess.Popen[bytes]], how: signal.Signals
) -> None:
    gw = await mesh.gateway(max_call_s=3.0)
    await wait_for_replicas(gw, "context", 2)
    _org, key = await mesh.tenant(scopes=["context:*"])
    status, body, _ = await gw.rpc("tools/call", call("context_create", {"title": "load"}), key=key)
    assert status == 200, body
    ctx_id = body["result"]["structuredContent"]["ctx_id"]

    load = Load(gw, key, ctx_id)
    workers = [asyncio.create_task(load.worker(w)) for w in range(WORKERS)]
    await load.until_acked(40)
    victim = replicas[0]
    victim.send_signal(how)
    await asyncio.to_thread(victim.wait, 60)
    gone_at = time.monotonic()  # calls started from here on must all succeed
    acked_at_kill = len(load.acked)
    await load.until_acked(acked_at_kill + 60)
    load.stop.set()
    await asyncio.gather(*workers)

    after_kill = [f for f in load.failed if f[0] >= gone_at]
    assert after_kill == [], after_kill[:3]
    in_flight_failures = len(load.failed)
    assert in_flight_failures <= WORKERS, load.failed  # at most the calls in flight at the kill
    assert load.gets_ok > 0

    entries = await read_all(gw, key, ctx_id)
    contents = [e["content"] for e in entries]
    seqs = [e["seq"] for e in entries]
    assert len(set(contents)) == len(contents), "an append was stored twice"
    assert seqs == sorted(set(seqs)), "entries out of order or a seq used twice"
    at = dict(zip(contents, seqs, strict=True))
    missing = [c for c in load.acked if c not in at]
    assert missing == [], f"acknowledged appends lost: {missing}"
    assert all(at[c] == seq for c, seq in load.acked.items()), "an append is not where its reply said"
    # Visible entries are the acknowledged ones plus, at most, appends whose call failed at the kill;
    # a seq with no entry comes only from such a call too (a reservation its replica never finished).
    extra = set(contents) - set(load.acked)
    assert len(extra) <= in_flight_failures
    holes = (seqs[-1] + 1) - len(seqs)
    assert holes <= in_flight_failures - len(extra)
