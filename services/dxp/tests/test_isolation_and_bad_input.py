"""Org B never uses org A's credentials nor sees its projects; secrets are never shown or
logged; bad input is refused clearly."""

from __future__ import annotations

import logging
import socket

import pytest

from mcpmesh.dxp.testing import ORG_A, ORG_B, Dxp
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.service.testing import ToolFailed, internals_in


async def test_each_org_signs_with_its_own_credentials(dxp: Dxp, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    a = await dxp.register(ORG_A, "shop")
    b = await dxp.register(ORG_B, "shop")  # the same name, another org's project
    for _ in range(2):  # interleaved
        await dxp.call(
            ORG_A,
            "deployment_start",
            {"project": "shop", "target_environment": "Integration", "packages": ["a.nupkg"]},
        )
        await dxp.call(ORG_B, "deployments", {"project": "shop"})
    keys_by_project = {(key, path.split("/")[4]) for key, _, path in dxp.sandbox.requests}
    assert keys_by_project == {(a.client_key, a.project_id), (b.client_key, b.project_id)}
    assert dxp.sandbox.starts(a.project_id) == 2 and dxp.sandbox.starts(b.project_id) == 0
    listed_b = await dxp.call(ORG_B, "projects")
    assert [p["project_id"] for p in listed_b["projects"]] == [b.project_id]
    deployments_b = await dxp.call(ORG_B, "deployments", {"project": "shop"})
    assert deployments_b == {"deployments": []}
    a_deployment = next(d for d in dxp.sandbox.deployments.values() if d.project_id == a.project_id)
    with pytest.raises(ToolFailed) as foreign:  # A's deployment id through B's project: not found
        await dxp.call(ORG_B, "deployment_get", {"project": "shop", "deployment_id": a_deployment.id})
    assert foreign.value.error.code == "not_found"
    await dxp.call(ORG_B, "project_remove", {"name": "shop"})
    assert [p["name"] for p in (await dxp.call(ORG_A, "projects"))["projects"]] == ["shop"]
    seen = "\n".join(dxp.seen) + "\n" + "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    for secret in (a.client_key, a.client_secret, b.client_key, b.client_secret):
        assert secret not in seen


async def test_bad_input_is_refused_clearly(dxp: Dxp) -> None:
    project = dxp.sandbox.add_project()
    await dxp.register(ORG_A, "shop", project)

    async def refused(tool: str, args: dict) -> tuple[str, str]:
        with pytest.raises(ToolFailed) as failed:
            await dxp.call(ORG_A, tool, args)
        assert failed.value.error is not None and not internals_in(failed.value.text)
        return str(failed.value.error.code), failed.value.error.message

    base = {"name": "x", "client_key": "k", "client_secret": project.client_secret}
    assert await refused("project_register", {**base, "project_id": "not-a-uuid"}) == (
        "invalid_request",
        "project_id must be the project's UUID, as the DXP portal's API page shows it",
    )
    code, message = await refused(
        "project_register", {**base, "project_id": project.project_id, "client_secret": "%%%"}
    )
    assert code == "invalid_request" and "base64" in message
    code, message = await refused("deployments", {"project": "nope"})
    assert code == "not_found" and "dxp_project_register" in message
    code, message = await refused("storage_containers", {"project": "shop", "environment": "Staging"})
    assert code == "invalid_request" and "Integration, Preproduction, Production" in message
    code, message = await refused("deployment_get", {"project": "shop", "deployment_id": "42"})
    assert code == "invalid_request" and "UUID" in message
    args = {"project": "shop", "target_environment": "Integration"}
    code, message = await refused("deployment_start", args)
    assert code == "invalid_request" and "either packages" in message
    code, message = await refused("deployment_start", {**args, "source_environment": "Integration"})
    assert code == "invalid_request" and "differ" in message
    started = await dxp.call(
        ORG_A, "deployment_start", {**args, "packages": ["a.nupkg"], "direct_deploy": True}
    )
    code, message = await refused(
        "deployment_complete", {"project": "shop", "deployment_id": started["deployment"]["id"]}
    )
    assert code == "conflict" and "AwaitingVerification" in message
    code, _ = await refused(
        "export_start", {"project": "shop", "environment": "Integration", "database": "mysql"}
    )
    assert code == "invalid_request"
    code, _ = await refused(
        "logs_find", {"project": "shop", "environment": "Integration", "since": "yesterday"}
    )
    assert code == "invalid_request"


async def test_read_scope_cannot_write(dxp: Dxp) -> None:
    await dxp.register(ORG_A)
    listed = await dxp.harness.call_tool(ORG_A, "deployments", {"project": "shop"}, scopes=["dxp:read"])
    assert listed == {"deployments": []}
    with pytest.raises(MeshException) as refused:
        await dxp.harness.call_tool(
            ORG_A,
            "deployment_start",
            {"project": "shop", "target_environment": "Integration", "packages": ["a"]},
            scopes=["dxp:read"],
        )
    assert refused.value.error.code is ErrorCode.FORBIDDEN and "dxp:write" in refused.value.error.message
    assert dxp.sandbox.starts(next(iter(dxp.sandbox.projects))) == 0


async def test_tenant_export_leaves_secrets_out_and_delete_drops_everything(dxp: Dxp) -> None:
    project = await dxp.register(ORG_A)
    await dxp.register(ORG_B)
    await dxp.call(ORG_A, "deployments", {"project": "shop"})
    exported = await dxp.harness.tenant_command("export", ORG_A)
    assert exported.export is not None and "secrets" not in exported.export
    assert [p["project_id"] for p in exported.export["projects"]] == [project.project_id]
    assert project.client_secret not in repr(exported) and project.client_key not in repr(exported)
    deleted = await dxp.harness.tenant_command("delete", ORG_A)
    assert {"projects", "rates", "secrets"} <= set(deleted.dropped)
    assert await dxp.call(ORG_A, "projects") == {"projects": []}
    assert len((await dxp.call(ORG_B, "projects"))["projects"]) == 1


async def test_an_unreachable_api_is_retried_for_reads_and_a_start_is_never_resent(dxp: Dxp) -> None:
    project = dxp.sandbox.add_project()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    port = closed.getsockname()[1]
    try:
        args = {
            "name": "gone",
            "project_id": project.project_id,
            "client_key": project.client_key,
            "client_secret": project.client_secret,
            "api_url": f"http://127.0.0.1:{port}/api/v1.0/",
        }
        await dxp.call(ORG_A, "project_register", args)
        with pytest.raises(ToolFailed) as read:
            await dxp.call(ORG_A, "deployments", {"project": "gone"})
        assert (
            read.value.error is not None
            and read.value.error.code == "unavailable"
            and read.value.error.retryable
        )
        start = {
            "project": "gone",
            "target_environment": "Integration",
            "packages": ["a.nupkg"],
            "op_id": "lost-1",
        }
        with pytest.raises(ToolFailed) as lost:
            await dxp.call(ORG_A, "deployment_start", start)
        assert lost.value.error is not None and lost.value.error.code == "unavailable"
        assert lost.value.error.retryable is False and "may have been applied" in lost.value.error.message
        with pytest.raises(ToolFailed) as again:  # the op id stays claimed: look first
            await dxp.call(ORG_A, "deployment_start", start)
        assert again.value.error is not None and again.value.error.code == "conflict"
        status = await dxp.call(ORG_A, "rate_limit_status", {"project": "gone"})
        assert status["minute"]["used"] == 4 + 1  # 1 + DXP_RETRIES tries of the read, one of the start
    finally:
        closed.close()
