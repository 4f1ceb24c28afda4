"""`./mesh up` (the dev runner): clear refusals, a clean start, and a clean stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def runner(state: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, MCPMESH_STATE_DIR=str(state))
    env.pop("NATS_URL", None)
    env.pop("MONGODB_URL", None)  # the runner's own embedded store, under `state`
    return subprocess.Popen(
        [sys.executable, "-m", "mcpmesh.dev.runner", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_port_in_use_is_refused_with_one_clear_sentence(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = runner(tmp_path, "--nats-port", str(port))
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert f"port {port} is in use: stop what listens there or pick another with --nats-port N" in err
    assert not (tmp_path / "dev.json").exists()
    assert not (tmp_path / "logs").exists()  # nothing was started


def test_up_writes_dev_json_and_stops_everything_on_sigterm(tmp_path: Path) -> None:
    proc = runner(tmp_path)
    facts_file = tmp_path / "dev.json"
    deadline = time.monotonic() + 90
    while not facts_file.exists():
        if proc.poll() is not None:
            pytest.fail(f"runner exited early: {proc.stderr.read() if proc.stderr else ''}")
        assert time.monotonic() < deadline, "dev.json never appeared"
        time.sleep(0.2)
    facts = json.loads(facts_file.read_text())
    host, port = facts["nats_url"].removeprefix("nats://").split(":")
    with socket.create_connection((host, int(port)), timeout=5):
        pass
    pids = list(facts["pids"].values())
    assert pids and all(alive(p) for p in pids)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    time.sleep(0.2)
    assert not any(alive(p) for p in pids), "orphan processes left behind"


def wait_for_facts(
    proc: subprocess.Popen[str], facts_file: Path, not_pids: dict[str, int] | None = None
) -> dict:
    """The dev.json this run wrote (not the one a previous run left behind)."""
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(f"runner exited early: {proc.stderr.read() if proc.stderr else ''}")
        assert time.monotonic() < deadline, "dev.json never appeared"
        if facts_file.exists():
            try:
                facts = json.loads(facts_file.read_text())
            except ValueError:  # being written
                facts = {}
            if facts.get("pids") and facts["pids"] != not_pids:
                return facts
        time.sleep(0.2)


def mcp_call(facts: dict, tool: str, arguments: dict) -> dict:
    """One tools/call through the gateway with the printed key (MCP 2026-07-28, plain HTTP)."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": tool,
            "arguments": arguments,
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
            },
        },
    }
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "x-api-key": facts["api_key"],
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": tool,
    }
    req = urllib.request.Request(facts["mcp_url"], data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(req, timeout=30) as resp:
        reply: dict = json.loads(resp.read())
    assert not reply["result"].get("isError"), reply
    return reply["result"]["structuredContent"]


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


def test_a_restart_keeps_the_demo_key_and_the_data(tmp_path: Path) -> None:
    """Stopped and started again on the same .mesh: the printed key still works (the demo org
    and key are reused, not recreated) and a context created before is still there."""
    proc = runner(tmp_path)
    try:
        first = wait_for_facts(proc, tmp_path / "dev.json")
        created = mcp_call(
            first, "context.create", {"title": "kept", "entries": [{"role": "user", "content": "hi"}]}
        )
        mcp_call(
            first, "context.append", {"ctx_id": created["ctx_id"], "role": "assistant", "content": "hello"}
        )
    finally:
        stop(proc)
    proc = runner(tmp_path)
    try:
        again = wait_for_facts(proc, tmp_path / "dev.json", not_pids=first["pids"])
        assert (again["org_id"], again["key_id"], again["api_key"]) == (
            first["org_id"],
            first["key_id"],
            first["api_key"],
        )
        assert "mongo" in again["pids"] and (tmp_path / "mongo" / "data").is_dir()  # the store of .mesh
        got = mcp_call(again, "context.get", {"ctx_id": created["ctx_id"]})
        assert got["title"] == "kept"
        assert [(e["role"], e["content"]) for e in got["entries"]] == [("user", "hi"), ("assistant", "hello")]
    finally:
        stop(proc)
