"""Legacy-session error statuses, checked with real old clients against the real gateway and
mcp-context: a tool error and a JSON-RPC error must not drop a 2025-11-25 session (mcp 1.x
drops its connection on a non-200 JSON-RPC error, mcp-remote re-wraps 4xx as an auth failure,
404 means "session terminated" to every legacy client), and a call afterwards works.

The clients are installed once into a cache (tests/gateway/compat_clients.py; the README's
test section names the folder); the first run takes ~20 s more.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import msgspec
import pytest

from .compat_clients import MCP1_CLIENT, mcp1_python, mcp_remote
from .conftest import LEGACY, Gateway, Mesh

pytestmark = pytest.mark.asyncio

#: A JSON-RPC answer from a client process (installed and warm) takes well under this.
_REPLY_S = 60.0


async def test_an_mcp1_client_keeps_its_session_through_errors(
    context_mesh: tuple[Mesh, Gateway],
) -> None:
    mesh, gw = context_mesh
    python = await asyncio.to_thread(mcp1_python)
    _org, key = await mesh.tenant(scopes=["context:read", "context:write"])
    proc = await asyncio.create_subprocess_exec(
        str(python),
        str(MCP1_CLIENT),
        gw.url,
        key,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    seen = out.decode()
    assert proc.returncode == 0, f"mcp 1.x client failed:\n{seen}\n{err.decode()[-3000:]}"
    for step in (
        f"initialized: protocol {LEGACY}",
        "tool error as a result: {'code': 'not_found'",
        "JSON-RPC error, session kept: -32602",
        "a call after both errors works:",
    ):
        assert step in seen, f"missing step {step!r} in:\n{seen}"


class StdioPeer:
    """JSON-RPC over a child process's stdin/stdout, one message per line (MCP stdio)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.next_id = 0

    async def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(msgspec.json.encode(message) + b"\n")
        await self.proc.stdin.drain()

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            message["params"] = params
        await self.send(message)
        assert self.proc.stdout is not None
        while True:  # skip notifications and anything not answering this request
            line = await asyncio.wait_for(self.proc.stdout.readline(), _REPLY_S)
            if not line:
                raise AssertionError(f"mcp-remote exited while {method} was pending")
            reply = msgspec.json.decode(line)
            if reply.get("id") == self.next_id:
                return dict(reply)


async def test_mcp_remote_keeps_its_connection_through_errors(
    context_mesh: tuple[Mesh, Gateway], tmp_path: Path
) -> None:
    mesh, gw = context_mesh
    executable = await asyncio.to_thread(mcp_remote)
    _org, key = await mesh.tenant(scopes=["context:read", "context:write"])
    stderr_path = tmp_path / "mcp-remote.log"
    with stderr_path.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            str(executable),
            gw.url,
            "--header",
            f"x-api-key:{key}",
            "--transport",
            "http-only",
            "--allow-http",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env={**os.environ, "MCP_REMOTE_CONFIG_DIR": str(tmp_path / "auth")},
        )
    peer = StdioPeer(proc)
    try:
        init = await peer.request(
            "initialize",
            {
                "protocolVersion": LEGACY,
                "capabilities": {},
                "clientInfo": {"name": "claude-desktop-like", "version": "1"},
            },
        )
        assert init["result"]["serverInfo"]["name"] == "mcpmesh", init
        await peer.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        listed = await peer.request("tools/list")
        names = {t["name"] for t in listed["result"]["tools"]}
        assert {"context_get", "context_create"} <= names, names
        missing = await peer.request(
            "tools/call", {"name": "context_get", "arguments": {"ctx_id": "ctx-" + "a" * 24}}
        )
        assert missing["result"]["isError"] is True, missing
        assert missing["result"]["structuredContent"]["code"] == "not_found", missing
        unknown = await peer.request("tools/call", {"name": "context_no_such_tool", "arguments": {}})
        assert unknown["error"]["code"] == -32602, unknown
        created = await peer.request(
            "tools/call", {"name": "context_create", "arguments": {"title": "after"}}
        )
        assert created["result"].get("isError") is not True, created
        assert created["result"]["structuredContent"]["ctx_id"], created
        assert proc.returncode is None  # the bridge is still up
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
    log = stderr_path.read_text(errors="replace")
    assert "Proxy established" in log, log[-3000:]
    # What mcp-remote logs when it takes an error for lost auth or a lost session (0.15.1).
    for sign in (
        "Authentication required",
        "Remote server requires authorization",
        "Remote session expired",
        "Error from remote server",
        "Transport error",
        "Connection error",
        "Fatal error",
    ):
        assert sign not in log, f"mcp-remote logged {sign!r}:\n{log[-3000:]}"
