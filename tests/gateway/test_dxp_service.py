"""The real dxp service behind two gateway replicas, against the DXP sandbox, through the
official SDK: a deployment started and monitored to the end by a durable job (a dxp job gets
its job ticket from the gateway), followed from the other replica."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from mcpmesh.dxp.sandbox import Sandbox
from mcpmesh.dxp.service import build_service
from mcpmesh.dxp.settings import DxpSettings
from mcpmesh.secrets.keys import new_master_key_entry
from mcpmesh.service import ServiceSettings


async def _call(client: Client, tool: str, args: dict[str, Any], seen: list[str]) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    seen.append(json.dumps(result.structured_content))
    assert result.is_error is False and result.structured_content is not None, result
    return result.structured_content


async def _job(client: Client, job_id: str, seen: list[str]) -> dict[str, Any]:
    for _ in range(600):
        view = await _call(client, "dxp_job_status", {"job_id": job_id}, seen)
        if view["status"] not in ("queued", "running"):
            break
        await asyncio.sleep(0.05)
    assert view["status"] == "succeeded", view
    return await _call(client, "dxp_job_result", {"job_id": job_id}, seen)


async def test_a_deployment_monitored_to_the_end_from_another_replica(mesh: Any) -> None:
    sandbox = await Sandbox(step_s=0.3).start()
    try:
        project = sandbox.add_project()
        settings = ServiceSettings(
            mongodb_url=mesh.mongo_url,
            mongodb_database=mesh.database + "_dxp",
            secrets_keys=new_master_key_entry("gw"),
        )
        fast = DxpSettings(allow_http=True, monitor_poll_s=0.05, backoff_s=0.01)
        await mesh.service(build_service(fast), settings)
        gw1, gw2 = await mesh.gateway(), await mesh.gateway()
        await mesh.wait_discovered("dxp")
        _, key = await mesh.tenant(scopes=["dxp:read", "dxp:write"])
        seen: list[str] = []
        http1 = create_mcp_http_client(headers={"x-api-key": key})
        http2 = create_mcp_http_client(headers={"x-api-key": key})
        async with (
            Client(streamable_http_client(gw1.url, http_client=http1), mode="2026-07-28") as one,
            Client(streamable_http_client(gw2.url, http_client=http2), mode="2026-07-28") as two,
        ):
            names = {t.name for t in (await one.list_tools()).tools}
            assert {
                "dxp_deployment_start",
                "dxp_deployment_monitor",
                "dxp_analyze_logs",
                "dxp_project_register",
            } <= names
            registered = {
                "name": "shop",
                "project_id": project.project_id,
                "client_key": project.client_key,
                "client_secret": project.client_secret,
                "api_url": sandbox.base_url,
            }
            await _call(one, "dxp_project_register", registered, seen)
            start = {
                "project": "shop",
                "target_environment": "Preproduction",
                "source_environment": "Integration",
            }
            deployment = (await _call(one, "dxp_deployment_start", {**start, "op_id": "r1"}, seen))[
                "deployment"
            ]
            job = await _call(
                one, "dxp_deployment_monitor", {"project": "shop", "deployment_id": deployment["id"]}, seen
            )
            settled = await _job(two, job["job_id"], seen)
            assert settled["deployment"]["status"] == "AwaitingVerification"
            await _call(
                two, "dxp_deployment_complete", {"project": "shop", "deployment_id": deployment["id"]}, seen
            )
            job = await _call(
                two, "dxp_deployment_monitor", {"project": "shop", "deployment_id": deployment["id"]}, seen
            )
            assert (await _job(one, job["job_id"], seen))["deployment"]["status"] == "Succeeded"
            assert sandbox.starts(project.project_id) == 1
        text = "\n".join(seen)
        assert project.client_secret not in text and project.client_key not in text
    finally:
        await sandbox.stop()
