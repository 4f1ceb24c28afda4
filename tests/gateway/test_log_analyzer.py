"""The gateway in front of the real log-analyzer, with a source in Azurite, through the official SDK."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from mcpmesh.dev.azuriteproc import LocalAzurite
from mcpmesh.logs import LogsSettings
from mcpmesh.logs.demo import DemoSpec, Truth, hourly_blobs
from mcpmesh.logs.service import build_service
from mcpmesh.secrets.keys import new_master_key_entry
from mcpmesh.service import ServiceSettings


async def test_a_source_analysis_through_the_gateway(mesh: Any, azurite: LocalAzurite) -> None:
    settings = ServiceSettings(
        mongodb_url=mesh.mongo_url,
        mongodb_database=mesh.database + "_logs",
        secrets_keys=new_master_key_entry("gw"),
    )
    await mesh.service(build_service(LogsSettings(allow_http=True)), settings)
    gw = await mesh.gateway()
    await mesh.wait_discovered("logs")
    _, key = await mesh.tenant(scopes=["logs:*"])
    truth = Truth()
    azurite.upload("gw-logs", hourly_blobs(DemoSpec(hours=2, per_minute=10), truth))
    sas_url = azurite.container_sas_url("gw-logs")
    http = create_mcp_http_client(headers={"x-api-key": key})
    seen = []
    async with Client(streamable_http_client(gw.url, http_client=http), mode="2026-07-28") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"logs_source_add", "logs_analyze_source", "logs_compare", "logs_job_status"} <= names
        added = await client.call_tool("logs_source_add", {"name": "prod", "sas_url": sas_url})
        assert added.is_error is False and added.structured_content is not None
        seen.append(added.structured_content)
        job = await client.call_tool(
            "logs_analyze_source", {"source_id": added.structured_content["source_id"]}
        )
        assert job.structured_content is not None
        job_id = job.structured_content["job_id"]
        for _ in range(600):
            view = (await client.call_tool("logs_job_status", {"job_id": job_id})).structured_content
            assert view is not None
            if view["status"] not in ("queued", "running"):
                break
            await asyncio.sleep(0.05)
        assert view["status"] == "succeeded", view
        result = await client.call_tool("logs_job_result", {"job_id": job_id})
        assert result.structured_content is not None
        seen.append(result.structured_content)
        assert result.structured_content["report"]["requests"] == truth.requests
    assert parse_qs(urlsplit(sas_url).query)["sig"][0] not in json.dumps(seen)
