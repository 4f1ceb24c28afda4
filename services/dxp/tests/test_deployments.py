"""Deployments through the tools against the sandbox: the state machine end to end (monitor
job included), Production's confirmation and audit, a retried start not duplicated, and the
API's failure modes (429 + Retry-After, 5xx backoff, success: false, client-side limits)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import secrets
import time

import pytest

from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.dxp.ops import SETTLED
from mcpmesh.dxp.settings import DxpSettings
from mcpmesh.dxp.testing import ORG_A, Dxp
from mcpmesh.proto.events import AuditEvent
from mcpmesh.service.testing import ToolFailed, audit_events, internals_in

from .conftest import FAST


async def _settled(dxp: Dxp, deployment_id: str, project: str = "shop") -> dict:
    """Poll deployment_get until the deployment settles (the monitor job is played through the
    gateway: tests/gateway/test_dxp_service.py, a dxp job needs the gateway's job ticket)."""
    async with asyncio.timeout(10):
        while True:
            d = await dxp.call(ORG_A, "deployment_get", {"project": project, "deployment_id": deployment_id})
            if d["status"] in SETTLED:
                return {"deployment": d}
            await asyncio.sleep(0.05)


async def test_deploy_verify_complete_end_to_end(dxp: Dxp) -> None:
    await dxp.register(ORG_A)
    started = await dxp.call(
        ORG_A,
        "deployment_start",
        {"project": "shop", "target_environment": "Preproduction", "source_environment": "Integration"},
    )
    deployment = started["deployment"]
    assert deployment["status"] == "InProgress"
    assert deployment["parameters"]["sourceApps"] == ["cms"]
    settled = await _settled(dxp, deployment["id"])
    assert settled["deployment"]["status"] == "AwaitingVerification"
    assert settled["deployment"]["validationLinks"]
    completed = await dxp.call(
        ORG_A, "deployment_complete", {"project": "shop", "deployment_id": deployment["id"]}
    )
    assert completed["status"] == "Completing"
    assert (await _settled(dxp, deployment["id"]))["deployment"]["status"] == "Succeeded"
    listed = await dxp.call(ORG_A, "deployments", {"project": "shop"})
    assert [d["id"] for d in listed["deployments"]] == [deployment["id"]]
    with pytest.raises(ToolFailed) as wrong_state:  # complete again: it is over
        await dxp.call(ORG_A, "deployment_complete", {"project": "shop", "deployment_id": deployment["id"]})
    assert wrong_state.value.error.code == "conflict" and "Succeeded" in wrong_state.value.error.message


async def test_failed_package_then_reset(dxp: Dxp) -> None:
    await dxp.register(ORG_A)
    started = await dxp.call(
        ORG_A,
        "deployment_start",
        {"project": "shop", "target_environment": "Integration", "packages": ["cms.fail.nupkg"]},
    )
    settled = await _settled(dxp, started["deployment"]["id"])
    assert settled["deployment"]["status"] == "Failed" and settled["deployment"]["deploymentErrors"]
    reset = await dxp.call(
        ORG_A,
        "deployment_reset",
        {"project": "shop", "deployment_id": started["deployment"]["id"], "db_rollback": True},
    )
    assert reset["status"] == "Resetting" and reset["parameters"]["resetWithDbRollback"] is True
    assert (await _settled(dxp, started["deployment"]["id"]))["deployment"]["status"] == "Reset"


async def _audit_events(nats_server: LocalNatsServer, project_id: str, n: int) -> list[AuditEvent]:
    """The dxp audit events of a project in the AUDIT stream (read as the gateway's writer does)."""
    return await audit_events(
        nats_server, ORG_A, "dxp", n, lambda e: e.detail.get("project_id") == project_id
    )


async def test_production_needs_confirmation_and_is_audited(dxp: Dxp, nats_server: LocalNatsServer) -> None:
    project = await dxp.register(ORG_A)
    args = {"project": "shop", "target_environment": "Production", "source_environment": "Preproduction"}
    with pytest.raises(ToolFailed) as refused:
        await dxp.call(ORG_A, "deployment_start", args)
    assert (
        refused.value.error.code == "invalid_request"
        and "confirm_production=true" in refused.value.error.message
    )
    assert dxp.sandbox.starts(project.project_id) == 0
    started = await dxp.call(ORG_A, "deployment_start", {**args, "confirm_production": True})
    assert started["deployment"]["parameters"]["targetEnvironment"] == "Production"
    events = await _audit_events(nats_server, project.project_id, 2)
    assert [(e.action, e.outcome, e.target, e.actor) for e in events] == [
        ("dxp.deployment_start", "invalid_request", "shop/Production", "key-test"),
        ("dxp.deployment_start", "ok", "shop/Production", "key-test"),
    ]
    assert events[1].source == "dxp" and events[1].org_id == ORG_A
    assert project.client_secret not in repr(events) and project.client_key not in repr(events)


async def test_a_retried_start_does_not_start_twice(dxp: Dxp) -> None:
    project = await dxp.register(ORG_A)
    args = {
        "project": "shop",
        "target_environment": "Integration",
        "packages": ["cms.nupkg"],
        "op_id": "release-42",
    }
    first, second = await asyncio.gather(
        dxp.call(ORG_A, "deployment_start", args), dxp.call(ORG_A, "deployment_start", args)
    )
    assert dxp.sandbox.starts(project.project_id) == 1
    outcomes = sorted([first.get("replayed"), second.get("replayed")])
    assert outcomes == [False, True] or first == second
    again = await dxp.call(ORG_A, "deployment_start", args)
    assert again["replayed"] is True and again["deployment"]["id"] == first["deployment"]["id"]
    with pytest.raises(ToolFailed) as other:
        await dxp.call(ORG_A, "deployment_start", {**args, "packages": ["other.nupkg"]})
    assert other.value.error.code == "conflict"
    assert dxp.sandbox.starts(project.project_id) == 1


async def test_429_retry_after_is_honoured(dxp: Dxp) -> None:
    project = await dxp.register(ORG_A)
    dxp.sandbox.fail_next(429, 2, retry_after="1")
    before = len(dxp.sandbox.requests)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    listed = await dxp.call(ORG_A, "deployments", {"project": "shop"})
    waited = loop.time() - t0
    assert listed == {"deployments": []}
    assert len(dxp.sandbox.requests) - before == 3  # two 429s, then the answer
    assert waited >= 2.0  # two Retry-After: 1 waits (a lower bound, not a timing assertion)
    dxp.sandbox.fail_next(429, 1, retry_after="3600")  # longer than DXP_MAX_RETRY_AFTER_S: told, not waited
    with pytest.raises(ToolFailed) as limited:
        await dxp.call(ORG_A, "deployments", {"project": "shop"})
    assert limited.value.error.code == "rate_limited" and limited.value.error.details["retry_after_s"] == 3600
    dxp.sandbox.fail_next(429, 1, retry_after="1")  # even a start is resent after a 429 (nothing was done)
    await dxp.call(
        ORG_A,
        "deployment_start",
        {"project": "shop", "target_environment": "Integration", "packages": ["a.nupkg"]},
    )
    assert dxp.sandbox.starts(project.project_id) == 1


async def test_5xx_backs_off_for_reads_and_never_resends_a_start(dxp: Dxp) -> None:
    project = await dxp.register(ORG_A)
    dxp.sandbox.fail_next(503, 2)
    assert await dxp.call(ORG_A, "deployments", {"project": "shop"}) == {"deployments": []}
    dxp.sandbox.fail_next(502, 4)  # more than DXP_RETRIES: unavailable, retryable
    with pytest.raises(ToolFailed) as down:
        await dxp.call(ORG_A, "deployments", {"project": "shop"})
    assert down.value.error.code == "unavailable" and down.value.error.retryable
    dxp.sandbox.fail_next(504, 1)
    before = len(dxp.sandbox.requests)
    with pytest.raises(ToolFailed) as start:
        await dxp.call(
            ORG_A,
            "deployment_start",
            {"project": "shop", "target_environment": "Integration", "packages": ["a.nupkg"]},
        )
    assert start.value.error.code == "unavailable" and start.value.error.retryable is False
    assert "may have been applied" in start.value.error.message  # a 504 may hide a start that was made
    assert len(dxp.sandbox.requests) - before == 1 and dxp.sandbox.starts(project.project_id) == 0


async def test_success_false_is_a_failure_with_the_api_message(dxp: Dxp) -> None:
    await dxp.register(ORG_A)
    dxp.sandbox.fail_next(200, errors=["The project is locked by another operation."])
    with pytest.raises(ToolFailed) as failed:
        await dxp.call(ORG_A, "deployments", {"project": "shop"})
    assert failed.value.error.code == "invalid_request"
    assert "The project is locked by another operation." in failed.value.error.message


@pytest.mark.parametrize("dxp_settings", [dataclasses.replace(FAST, per_minute=3)])
async def test_client_side_limit_per_project(dxp: Dxp, dxp_settings: DxpSettings) -> None:
    await dxp.register(ORG_A)
    if time.time() % 60 > 50:  # the four calls must fall in one minute window: start in a fresh one
        await asyncio.sleep(60 - time.time() % 60)
    for _ in range(3):
        await dxp.call(ORG_A, "deployments", {"project": "shop"})
    before = len(dxp.sandbox.requests)
    with pytest.raises(ToolFailed) as limited:
        await dxp.call(ORG_A, "deployments", {"project": "shop"})
    assert limited.value.error.code == "rate_limited" and limited.value.error.details["per"] == "minute"
    assert len(dxp.sandbox.requests) == before  # refused before reaching the API
    status = await dxp.call(ORG_A, "rate_limit_status", {"project": "shop"})
    assert (
        status["minute"]["used"] == 3
        and status["minute"]["remaining"] == 0
        and status["hour"]["limit"] == 10000
    )


async def test_exports_and_storage(dxp: Dxp) -> None:
    await dxp.register(ORG_A)
    export = await dxp.call(ORG_A, "export_start", {"project": "shop", "environment": "Integration"})
    assert export["status"] == "InProgress"
    args = {"project": "shop", "environment": "Integration", "export_id": export["id"]}
    async with asyncio.timeout(10):
        while True:
            status = await dxp.call(ORG_A, "export_status", args)
            if status["status"] == "Succeeded":
                break
            await asyncio.sleep(0.1)
    assert status["downloadLink"].startswith("http://127.0.0.1")
    listed = await dxp.call(ORG_A, "exports", {"project": "shop", "environment": "Integration"})
    assert [e["id"] for e in listed["exports"]] == [export["id"]]
    containers = await dxp.call(ORG_A, "storage_containers", {"project": "shop", "environment": "Production"})
    assert "insights-logs-appservicehttplogs" in containers["containers"]
    logs = await dxp.call(ORG_A, "log_containers", {"project": "shop", "environment": "Production"})
    assert set(logs["containers"]) == {
        "insights-logs-appservicehttplogs",
        "insights-logs-appserviceconsolelogs",
    }
    link = await dxp.call(
        ORG_A,
        "storage_sas_link",
        {"project": "shop", "environment": "Integration", "container": "mysitemedia"},
    )
    assert link["writable"] is False and "sp=rl" in link["sas_url"]
    with pytest.raises(ToolFailed) as prod:
        await dxp.call(
            ORG_A,
            "storage_sas_link_writable",
            {"project": "shop", "environment": "Production", "container": "mysitemedia"},
        )
    assert "confirm_production" in prod.value.error.message


async def test_wrong_secret_is_refused_clearly(dxp: Dxp) -> None:
    project = dxp.sandbox.add_project()
    wrong = dataclasses.replace(project, client_secret=base64.b64encode(secrets.token_bytes(32)).decode())
    await dxp.register(ORG_A, project=wrong)
    with pytest.raises(ToolFailed) as refused:
        await dxp.call(ORG_A, "deployments", {"project": "shop"})
    assert refused.value.error.code == "forbidden" and "credentials" in refused.value.error.message
    assert dxp.sandbox.refused[-1] == "invalid signature"
    assert not internals_in(refused.value.text) and wrong.client_secret not in refused.value.text
