"""The gateway in front of the real mcp-context service, through NATS, with the official SDK."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError


def client(url: str, key: str, mode: str) -> Client:
    http = create_mcp_http_client(headers={"x-api-key": key})
    return Client(streamable_http_client(url, http_client=http), mode=mode)


async def test_both_revisions_create_append_and_read_a_context(context_mesh: tuple[Any, Any]) -> None:
    mesh, gw = context_mesh
    org, key = await mesh.tenant(scopes=["context:*"], name="Acme")
    async with client(gw.url, key, "2026-07-28") as modern:
        created = await modern.call_tool("context_create", {"title": "plan"})
        assert created.is_error is False and created.structured_content is not None
        ctx_id = created.structured_content["ctx_id"]
    async with client(gw.url, key, "legacy") as legacy:
        appended = await legacy.call_tool(
            "context_append", {"ctx_id": ctx_id, "role": "user", "content": "hello"}
        )
        assert appended.is_error is False
        got = await legacy.call_tool("context_get", {"ctx_id": ctx_id})
        assert got.structured_content is not None
        assert got.structured_content["title"] == "plan"
        assert [e["content"] for e in got.structured_content["entries"]] == ["hello"]
    async with client(gw.base("/mcp/context"), key, "2026-07-28") as single:
        listed = await single.call_tool("list", {})
        assert [c["ctx_id"] for c in listed.structured_content["contexts"]] == [ctx_id]  # type: ignore[index]
    assert org


async def test_another_org_sees_nothing_and_a_read_key_cannot_write(context_mesh: tuple[Any, Any]) -> None:
    mesh, gw = context_mesh
    _org_a, key_a = await mesh.tenant(scopes=["context:*"], name="Alpha Secret Name")
    _org_b, key_b = await mesh.tenant(scopes=["context:read"], name="Beta")
    async with client(gw.url, key_a, "2026-07-28") as a:
        created = await a.call_tool("context_create", {"title": "alpha-private-title"})
        ctx_id = created.structured_content["ctx_id"]  # type: ignore[index]
    async with client(gw.url, key_b, "2026-07-28") as b:
        names = {t.name for t in (await b.list_tools()).tools}
        assert "context_get" in names and "context_create" not in names
        got = await b.call_tool("context_get", {"ctx_id": ctx_id})
        assert got.is_error is True
        text = " ".join(getattr(c, "text", "") for c in got.content)
        assert "alpha-private-title" not in text and "Alpha" not in text
        listed = await b.call_tool("context_list", {})
        assert listed.structured_content["contexts"] == []  # type: ignore[index]
        with pytest.raises(MCPError) as info:
            await b.call_tool("context_create", {"title": "x"})
        assert "missing scope 'context:write'" in info.value.error.message
