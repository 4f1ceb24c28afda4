"""Drive the gateway with an mcp 1.x client (what langchain-mcp-adapters uses): a tool error and
a JSON-RPC error must not drop the 2025-11-25 session; calls afterwards still work.

mcp 1.x cannot share the repo's venv (it pins mcp 2), so run it from a venv of its own:

    python3.11 -m venv /tmp/mcp1 && /tmp/mcp1/bin/pip install 'mcp<2'
    ./mesh up        # prints the MCP URL and an API key (or use .mesh/dev.json)
    /tmp/mcp1/bin/python tools/compat/mcp1_client.py http://127.0.0.1:PORT/mcp mk_...

Exits 0 and prints what it saw when every step behaved; 1 with the failing step otherwise.
tests/gateway/test_old_clients.py runs it (from a cached venv, mcp 1.30.0) against a test gateway.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from typing import Any

from mcp import ClientSession, McpError
from mcp.client.streamable_http import streamablehttp_client


async def check(url: str, key: str) -> list[str]:
    seen: list[str] = []
    async with (
        streamablehttp_client(url, headers={"x-api-key": key}, timeout=timedelta(seconds=30)) as (
            read,
            write,
            _,
        ),
        ClientSession(read, write) as session,
    ):
        init = await session.initialize()
        seen.append(f"initialized: protocol {init.protocolVersion}")
        names = sorted(t.name for t in (await session.list_tools()).tools)
        seen.append(f"{len(names)} tools, e.g. {names[:3]}")
        ctx: Any = await session.call_tool(
            "context_get", {"ctx_id": "ctx-" + "a" * 24}
        )  # well-formed, not there
        assert ctx.isError, f"expected a tool error, got {ctx}"
        seen.append(f"tool error as a result: {ctx.structuredContent}")
        try:
            await session.call_tool("context_no_such_tool", {})
            raise AssertionError("an unknown tool was accepted")
        except McpError as exc:
            seen.append(f"JSON-RPC error, session kept: {exc.error.code} {exc.error.message[:60]}")
        created: Any = await session.call_tool("context_create", {"title": "after the errors"})
        assert not created.isError, created
        seen.append(f"a call after both errors works: {created.structuredContent}")
    return seen


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        for line in asyncio.run(check(argv[0], argv[1])):
            print(line)
    except Exception as exc:  # report the step that failed, as a line
        print(f"FAILED: {exc!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
