"""The real dxp service behind two gateway replicas, against the DXP sandbox, through the
official SDK: a deployment started and monitored to the end by a durable job (a dxp job gets
its job ticket from the gateway), followed from the other replica; logs analysed and compared
through the real log-analyzer (the sandbox's log containers in Azurite)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from mcpmesh.dev.azuriteproc import LocalAzurite
from mcpmesh.dev.dxpsandbox import Sandbox
from mcpmesh.dxp.service import build_service
from mcpmesh.dxp.settings import DxpSettings
from mcpmesh.logs import LogsSettings
from mcpmesh.logs.service import build_service as build_logs
from mcpmesh.secrets.keys import new_master_key_entry
from mcpmesh.service import ServiceSettings


async def _call(client: Client, tool: str, args: dict[str, Any], seen: list[str]) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    seen.append(json.dumps(result.structured_content))
    assert result.is_error is False and result.structured_content is not None, result
    return result.structured_content


async def _job(client: Client, job_id: str, seen: list[str], service: str = "dxp") -> dict[str, Any]:
    for _ in range(1200):
        view = await _call(client, f"{service}_job_status", {"job_id": job_id}, seen)
        if view["status"] not in ("queued", "running"):
            break
        await asyncio.sleep(0.05)
    assert view["status"] == "succeeded", view
    return await _call(client, f"{service}_job_result", {"job_id": job_id}, seen)


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


async def test_logs_analysed_and_compared_through_log_analyzer(mesh: Any, azurite: LocalAzurite) -> None:
    sandbox = await Sandbox(step_s=0.3, azurite=azurite, log_hours=3, log_per_minute=5).start()
    try:
        project = sandbox.add_project()
        for name, svc in (
            ("_dxp", build_service(DxpSettings(allow_http=True, monitor_poll_s=0.05))),
            ("_logs", build_logs(LogsSettings(allow_http=True))),
        ):
            settings = ServiceSettings(
                mongodb_url=mesh.mongo_url,
                mongodb_database=mesh.database + name,
                secrets_keys=new_master_key_entry("gw"),
            )
            await mesh.service(svc, settings)
        gw = await mesh.gateway()
        await mesh.wait_discovered("dxp", "logs")
        _, key = await mesh.tenant(scopes=["dxp:read", "dxp:write", "logs:read", "logs:write"])
        seen: list[str] = []
        http = create_mcp_http_client(headers={"x-api-key": key})
        async with Client(streamable_http_client(gw.url, http_client=http), mode="2026-07-28") as client:
            registered = {
                "name": "shop",
                "project_id": project.project_id,
                "client_key": project.client_key,
                "client_secret": project.client_secret,
                "api_url": sandbox.base_url,
            }
            await _call(client, "dxp_project_register", registered, seen)
            hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
            span = {"since": hour.isoformat(), "until": (hour + timedelta(hours=1)).isoformat()}
            analysis = await _call(
                client, "dxp_analyze_logs", {"project": "shop", "environment": "Production", **span}, seen
            )
            report = (await _job(client, analysis["logs_job"]["job_id"], seen, "logs"))["report"]
            assert report["requests"] > 0 and report["errors"] > 0  # the burst of Production's latest hour
            ranges = {
                "baseline_since": (hour - timedelta(hours=2)).isoformat(),
                "baseline_until": (hour - timedelta(hours=1)).isoformat(),
                "candidate_since": span["since"],
                "candidate_until": span["until"],
            }
            job = await _call(
                client, "dxp_compare_logs", {"project": "shop", "environment": "Production", **ranges}, seen
            )
            compared = await _job(client, job["job_id"], seen)
            assert compared["comparison"]["verdict"] == "rollback"  # the burst is in the candidate hour
            deployment = (
                await _call(
                    client,
                    "dxp_deployment_start",
                    {
                        "project": "shop",
                        "target_environment": "Integration",
                        "packages": ["a.nupkg"],
                        "direct_deploy": True,
                    },
                    seen,
                )
            )["deployment"]
            around = {"project": "shop", "environment": "Integration", "deployment_id": deployment["id"]}
            job = await _call(client, "dxp_compare_logs", around, seen)
            compared = await _job(client, job["job_id"], seen)
            assert compared["comparison"]["verdict"] in ("proceed", "warning", "rollback")
            start = datetime.fromisoformat(deployment["startTime"].replace("Z", "+00:00"))
            assert datetime.fromisoformat(compared["baseline"]["until"]) == start  # the hour before it
            assert datetime.fromisoformat(compared["baseline"]["since"]) == start - timedelta(hours=1)
        text = "\n".join(seen)
        assert project.client_secret not in text and "sig=" not in text
    finally:
        await sandbox.stop()
