"""Tenant secrets in the kit (`MeshService(secrets=True)`): the tools, the org-scoped vault of
handlers and jobs, a missing master key at start, and tenant export/delete."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import subprocess
import sys
from typing import Any

import pytest
from mcp.server.mcpserver import Context

from mcpmesh.bus.mcp import request_body
from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.secrets import SecretsConfigError, new_master_key_entry
from mcpmesh.service import JobContext, MeshService, ServiceSettings, call_of
from mcpmesh.service.testing import LocalHarness, ServiceHarness, ToolFailed
from mcpmesh.service.vault import TOOL_SECRET_ARGS_META
from mcpmesh.store import Index

ORG_A = "org-acme"
ORG_B = "org-globex"
ADMIN = ["vault:*"]
PLAIN = ["vault:read", "vault:write"]
PLAINTEXT = "sk-live-kit-0123456789abcdef-TAIL"


def make_service() -> MeshService:
    svc = MeshService("vault", secrets=True, store_kinds={"notes": [Index(keys=[("n", 1)])]})

    @svc.tool(access="read")
    async def use(name: str, ctx: Context) -> dict[str, Any]:
        """What an upstream call would do with the secret: here, only its length."""
        value = await call_of(ctx).secrets.reveal(name)
        return {"length": None if value is None else len(value.reveal())}

    @svc.job_tool(access="write")
    async def use_later(name: str, job: JobContext) -> dict[str, Any]:
        value = await job.secrets.reveal(name)
        return {"length": None if value is None else len(value.reveal())}

    @svc.tool(access="write")
    async def note(n: int, ctx: Context) -> str:
        await (await call_of(ctx).store.collection("notes")).insert_one({"n": n})
        return "ok"

    return svc


@pytest.fixture
def settings(mongo_url: str, mongo_db: Any) -> ServiceSettings:
    keys = new_master_key_entry("k1")
    return ServiceSettings(mongodb_url=mongo_url, mongodb_database=mongo_db.name, secrets_keys=keys)


async def test_set_list_use_delete_and_nothing_shows_the_value(
    settings: ServiceSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with LocalHarness(make_service(), settings=settings) as local:
        info = await local.call_tool(
            ORG_A, "secret_set", {"name": "openai", "value": PLAINTEXT}, scopes=ADMIN
        )
        assert info["name"] == "openai" and info["last4"] == "TAIL" and info["key_id"] == "k1"
        assert set(info) == {"name", "fingerprint", "last4", "key_id", "created_at", "updated_at"}
        listed = await local.call_tool(ORG_A, "secrets", {}, scopes=ADMIN)
        assert listed == {"secrets": [info]}
        assert await local.call_tool(ORG_A, "use", {"name": "openai"}, scopes=PLAIN) == {
            "length": len(PLAINTEXT)
        }
        # Another org sees nothing of it, and cannot use it.
        assert await local.call_tool(ORG_B, "secrets", {}, scopes=ADMIN) == {"secrets": []}
        assert await local.call_tool(ORG_B, "use", {"name": "openai"}, scopes=PLAIN) == {"length": None}
        assert await local.call_tool(ORG_B, "secret_delete", {"name": "openai"}, scopes=ADMIN) == {
            "name": "openai",
            "deleted": False,
        }
        # Read and write are not enough: the tools need vault:admin.
        for tool, args in (
            ("secret_set", {"name": "x", "value": PLAINTEXT}),
            ("secrets", {}),
            ("secret_delete", {"name": "openai"}),
        ):
            with pytest.raises(MeshException, match="missing scope 'vault:admin'") as refused:
                await local.call_tool(ORG_A, tool, args, scopes=PLAIN)
            assert refused.value.error.code is ErrorCode.FORBIDDEN
        deleted = await local.call_tool(ORG_A, "secret_delete", {"name": "openai"}, scopes=ADMIN)
        assert deleted == {"name": "openai", "deleted": True}
        assert await local.call_tool(ORG_A, "secrets", {}, scopes=ADMIN) == {"secrets": []}
        bad_name = request_body(
            "tools/call", {"name": "secret_set", "arguments": {"name": "Bad Name!", "value": PLAINTEXT}}
        )
        reply = await local.raw(ORG_A, bad_name, stamp=local.stamp(ORG_A, ADMIN))
    assert b"invalid_request" in reply and b"secret name" in reply
    assert PLAINTEXT.encode() not in reply
    assert all(PLAINTEXT not in record.getMessage() for record in caplog.records)


async def test_bad_values_are_refused_without_echoing_them(settings: ServiceSettings) -> None:
    async with LocalHarness(make_service(), settings=settings) as local:
        for args, expected in (
            ({"name": "k", "value": "   "}, "must be a non-empty string"),
            ({"name": "k", "value": "v" * 20_000}, "longer than 16384 characters"),
            ({"name": "k", "value": 12345678901234567}, "value: expected a string"),
            ({"name": "k"}, "value: required"),
        ):
            with pytest.raises(ToolFailed, match=expected) as failed:
                await local.call_tool(ORG_A, "secret_set", args, scopes=ADMIN)
            assert "12345678901234567" not in str(failed.value) and "vvvv" not in str(failed.value)


async def test_tools_publish_scope_annotations_and_the_secret_argument(settings: ServiceSettings) -> None:
    async with LocalHarness(make_service(), settings=settings) as local:
        tools = {t["name"]: t for t in (await local.request(ORG_A, "tools/list", scopes=ADMIN))["tools"]}
    set_, list_, delete = tools["secret_set"], tools["secrets"], tools["secret_delete"]
    assert {t["_meta"]["mcpmesh/scope"] for t in (set_, list_, delete)} == {"vault:admin"}
    assert set_["_meta"][TOOL_SECRET_ARGS_META] == ["value"]
    hints = {name: tools[name]["annotations"] for name in ("secret_set", "secrets", "secret_delete")}
    assert hints["secret_set"]["readOnlyHint"] is False and hints["secret_set"]["idempotentHint"] is True
    assert hints["secrets"]["readOnlyHint"] is True
    assert hints["secret_delete"]["destructiveHint"] is True
    assert hints["secret_delete"]["idempotentHint"] is True


async def test_a_job_reaches_its_orgs_secrets(settings: ServiceSettings) -> None:
    async with LocalHarness(make_service(), settings=settings) as local:
        await local.call_tool(ORG_A, "secret_set", {"name": "dxp", "value": PLAINTEXT}, scopes=ADMIN)
        started = await local.call_tool(ORG_A, "use_later", {"name": "dxp"}, scopes=PLAIN)
        for _ in range(200):
            view = await local.call_tool(ORG_A, "job_status", {"job_id": started["job_id"]}, scopes=PLAIN)
            if view["status"] not in ("queued", "running"):
                break
            await asyncio.sleep(0.02)
        assert view["status"] == "succeeded"
        result = await local.call_tool(ORG_A, "job_result", {"job_id": started["job_id"]}, scopes=PLAIN)
        assert result == {"length": len(PLAINTEXT)}


async def test_without_a_master_key_the_service_stops_at_start(settings: ServiceSettings) -> None:
    with pytest.raises(SecretsConfigError, match="set MCPMESH_SECRETS_KEYS") as stopped:
        async with LocalHarness(make_service(), settings=dataclasses.replace(settings, secrets_keys=None)):
            pass
    assert str(stopped.value).count(".") <= 2  # one sentence (the file name has a dot)
    with pytest.raises(SecretsConfigError, match="must be '<id>:<base64 key>'"):
        bad = dataclasses.replace(settings, secrets_keys="not a key")
        async with LocalHarness(make_service(), settings=bad):
            pass


def test_declaring_the_secrets_kind_by_hand_is_refused() -> None:
    with pytest.raises(ValueError, match="reserved for tenant secrets"):
        MeshService("vault", secrets=True, store_kinds={"secrets": []})


async def test_a_service_without_secrets_says_how_to_get_them(settings: ServiceSettings) -> None:
    svc = MeshService("echo", store_kinds={"notes": []})

    @svc.tool(access="read")
    async def peek(ctx: Context) -> str:
        await call_of(ctx).secrets.infos()
        return "never"

    async with LocalHarness(svc, settings=settings) as local:
        with pytest.raises(
            ToolFailed, match=r"keeps no tenant secrets: declare MeshService\(\.\.\., secrets=True\)"
        ):
            await local.call_tool(ORG_A, "peek", {})


async def test_export_leaves_secrets_out_and_delete_removes_them(
    nats_server: LocalNatsServer, settings: ServiceSettings
) -> None:
    async with ServiceHarness(make_service(), nats_server, settings=settings) as harness:
        await harness.call_tool(ORG_A, "secret_set", {"name": "openai", "value": PLAINTEXT}, scopes=ADMIN)
        await harness.call_tool(ORG_A, "note", {"n": 1}, scopes=PLAIN)
        exported = await harness.tenant_command("export", ORG_A)
        assert exported.error is None and exported.export is not None
        assert set(exported.export) == {"notes"}
        dropped = await harness.tenant_command("delete", ORG_A)
        assert dropped.error is None and "secrets" in dropped.dropped
        assert await harness.call_tool(ORG_A, "secrets", {}, scopes=ADMIN) == {"secrets": []}
        assert await harness.call_tool(ORG_A, "use", {"name": "openai"}, scopes=PLAIN) == {"length": None}


def test_run_stops_at_start_with_one_sentence_naming_the_variable(mongo_url: str) -> None:
    code = (
        "from mcpmesh.service import MeshService, run; run(MeshService('vault', secrets=True), ['--stdio'])"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCPMESH_SECRETS_KEYS")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "MONGODB_URL": mongo_url},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "mcpmesh-vault: tenant secrets need a master key: set MCPMESH_SECRETS_KEYS='<id>:<base64 32 bytes>' "
        "or MCPMESH_SECRETS_KEYS_FILE (./mesh up makes one in .mesh/secrets-keys)"
    ]
