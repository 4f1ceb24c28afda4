"""A source job whose replica dies resumes on another one after the last blob it finished,
and counts every line once."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from mcpmesh.dev.azuriteproc import LocalAzurite
from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.logs import LogsSettings
from mcpmesh.logs.demo import DemoSpec, Truth, hourly_blobs
from mcpmesh.logs.runs import LogsApp
from mcpmesh.logs.service import build_service
from mcpmesh.logs.testing import JOB_WAIT_S, ORG_A, Logs
from mcpmesh.service import JobSettings, ServiceSettings
from mcpmesh.service.testing import ServiceHarness

FAST = JobSettings(lease_s=1.2, heartbeat_s=0.1, sweep_s=0.2, retention_h=1.0)


async def test_a_dead_replicas_source_job_resumes_after_its_last_blob(
    nats_server: LocalNatsServer, azurite: LocalAzurite, service_settings: ServiceSettings
) -> None:
    settings = replace(service_settings, shutdown_grace_s=0.5, jobs=FAST)
    held = asyncio.Event()

    async def hold(blob: str) -> None:  # r1 stops after its first blob and never goes on
        held.set()
        await asyncio.Event().wait()

    truth = Truth()
    spec = DemoSpec(hours=3, per_minute=20)
    r1 = ServiceHarness(build_service(LogsSettings(allow_http=True)), nats_server, settings=settings)
    async with r1:
        r1.service.state(LogsApp).after_blob = hold
        logs = Logs(r1, azurite, [])
        source = await logs.add_source(ORG_A, logs.container(hourly_blobs(spec, truth)))
        started = await logs.call(ORG_A, "analyze_source", {"source_id": source["source_id"]})
        await asyncio.wait_for(held.wait(), JOB_WAIT_S)
        await r1.kill()
    r2 = ServiceHarness(
        build_service(LogsSettings(allow_http=True)),
        nats_server,
        settings=settings,
        signing_key_pem=r1.signing_key_pem,
    )
    async with r2:
        logs = Logs(r2, azurite, [])
        view = await logs.finish(ORG_A, started["job_id"])
        assert view["status"] == "succeeded", view
        assert view["attempts"] == 2
        result = await logs.call(ORG_A, "job_result", {"job_id": started["job_id"]})
    report = result["report"]
    assert report["blobs"]["read"] == 3
    assert report["requests"] == truth.requests  # the first blob counted once, not again
    assert report["status_counts"] == {str(s): n for s, n in sorted(truth.statuses.items())}


async def test_a_cancelled_source_job_stops_and_keeps_its_progress(logs: Logs) -> None:
    held = asyncio.Event()

    async def hold(blob: str) -> None:
        held.set()
        await asyncio.Event().wait()

    logs.harness.service.state(LogsApp).after_blob = hold
    source = await logs.add_source(ORG_A, logs.container(hourly_blobs(DemoSpec(hours=3, per_minute=5))))
    started = await logs.call(ORG_A, "analyze_source", {"source_id": source["source_id"]})
    await asyncio.wait_for(held.wait(), JOB_WAIT_S)
    cancelled = await logs.call(ORG_A, "job_cancel", {"job_id": started["job_id"]})
    assert cancelled["status"] == "cancelled"
    view = await logs.finish(ORG_A, started["job_id"])
    assert view["status"] == "cancelled" and view["progress"] == 1 and view["total"] == 3
    assert view["partial"]["blobs"] == 1 and view["partial"]["requests"] == 60 * 5
    assert (await logs.call(ORG_A, "analyses", {}))["analyses"] == []
