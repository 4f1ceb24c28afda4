"""A raw-HTTP MCP session (httpx) as a 2025-11-25 client speaks it, and helpers of the task tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from .conftest import LEGACY

WAIT_S = 20.0  # bound on every wait below; none of them asserts a duration
RELATED = "io.modelcontextprotocol/related-task"


class Session:
    """One MCP session over raw HTTP, as a 2025-11-25 (or older) client speaks it."""

    def __init__(self, http: httpx.AsyncClient, url: str, key: str) -> None:
        self.http, self.url, self.key = http, url, key
        self.session = ""
        self.version = LEGACY
        self.ids = 0

    def on(self, url: str) -> Session:
        """The same session, through another gateway replica."""
        other = Session(self.http, url, self.key)
        other.session, other.version, other.ids = self.session, self.version, 1000
        return other

    async def open(self, version: str = LEGACY) -> dict[str, Any]:
        result = await self.rpc(
            "initialize",
            {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
        )
        self.version = result["result"]["protocolVersion"]
        await self.http.post(
            self.url,
            json={"jsonrpc": "2.0", "method": "notifications/initialized"},
            headers=self._headers(),
        )
        return dict(result["result"])

    def _headers(self) -> dict[str, str]:
        hdrs = {"x-api-key": self.key, "accept": "application/json, text/event-stream"}
        if self.session:
            hdrs |= {"mcp-session-id": self.session, "mcp-protocol-version": self.version}
        return hdrs

    async def post(self, method: str, params: dict[str, Any] | None = None) -> httpx.Response:
        """The HTTP response to a request with the next id (`self.ids`)."""
        self.ids += 1
        body = {"jsonrpc": "2.0", "id": self.ids, "method": method, "params": params or {}}
        return await self.http.post(self.url, json=body, headers=self._headers())

    async def rpc(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The JSON-RPC response (a result or an error: both travel with HTTP 200 in a session)."""
        resp = await self.post(method, params)
        assert resp.status_code == 200, resp.text
        self.session = self.session or resp.headers["mcp-session-id"]
        answer: dict[str, Any] = resp.json()
        assert answer["id"] == self.ids
        return answer

    async def result(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = await self.rpc(method, params)
        assert "result" in answer, answer
        return dict(answer["result"])

    async def error(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = await self.rpc(method, params)
        assert "error" in answer, answer
        return dict(answer["error"])

    async def start(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        created = await self.result(
            "tools/call", {"name": tool, "arguments": arguments, "task": {"ttl": 60000}}
        )
        assert set(created) == {"task"}, created  # the task, not the tool's result
        return dict(created["task"])

    async def get_until(self, task_id: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        async def poll() -> dict[str, Any]:
            while True:
                task = await self.result("tasks/get", {"taskId": task_id})
                if done(task):
                    return task
                await asyncio.sleep(0.05)

        return await asyncio.wait_for(poll(), WAIT_S)


def progress(task: dict[str, Any]) -> float:
    return float(task["_meta"]["mcpmesh/job"]["progress"] or 0)


def trace_lines(trace: Path, job_id: str) -> list[str]:
    if not trace.exists():
        return []
    return [line.split(" ", 2)[2] for line in trace.read_text().splitlines() if line.split(" ")[1] == job_id]


async def list_all(client: Session, *, page: int) -> list[str]:
    """Every task id tasks/list gives, following its cursor."""
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(20):
        listed = await client.result("tasks/list", {"cursor": cursor} if cursor else {})
        assert len(listed["tasks"]) <= page
        seen += [t["taskId"] for t in listed["tasks"]]
        cursor = listed.get("nextCursor")
        if cursor is None:
            return seen
    raise AssertionError("tasks/list never ended")


async def until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while True:
            if condition():
                return
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), WAIT_S)
