"""tools/meshctl against a running admin API (a real HTTP server), as a user would run it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.secrets import new_master_key_entry
from mcpmesh.service import MeshService, ServiceSettings
from mcpmesh.service.testing import ServiceHarness

from .conftest import ADMIN_KEY, SIGNING_PEM, Admin

MESHCTL = Path(__file__).resolve().parents[4] / "tools" / "meshctl"


async def meshctl(admin: Admin, *args: str, expect: int = 0, admin_key: str = ADMIN_KEY) -> str:
    env = dict(os.environ, MESH_ADMIN_URL=str(admin.client.make_url("/admin")), MESH_ADMIN_KEY=admin_key)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(MESHCTL),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == expect, (args, proc.returncode, out, err)
    return (out if expect == 0 else err).decode()


async def as_json(admin: Admin, *args: str) -> Any:
    return json.loads(await meshctl(admin, "--json", *args))


async def test_org_and_key_lifecycle_through_the_cli(admin: Admin) -> None:
    org = await as_json(
        admin, "org", "create", "Cli Co", "--tier", "pro", "--settings", '{"max_contexts": 3}'
    )
    assert org["tier"] == "pro" and org["settings"]["max_contexts"] == 3
    assert org["id"] in await meshctl(admin, "org", "list")
    assert (await as_json(admin, "org", "show", org["id"]))["name"] == "Cli Co"

    key = await as_json(
        admin,
        "key",
        "create",
        org["id"],
        "--name",
        "ci",
        "--scopes",
        "context:read,llm:*",
        "--tags",
        "ci,team:ops",
    )
    assert key["scopes"] == ["context:read", "llm:*"] and key["tags"] == ["ci", "team:ops"]
    assert (await admin.plane.authenticate(key["secret"])).key_id == key["id"]
    listing = await meshctl(admin, "key", "list", org["id"])
    assert key["id"] in listing and key["secret"] not in listing
    header, row = listing.splitlines()
    assert "TAGS" in header.split() and "ci,team:ops" in row.split() and "context:read,llm:*" in row.split()
    bad = await meshctl(admin, "key", "create", org["id"], "--name", "x", "--tags", "Bad Tag", expect=1)
    assert "invalid tag 'Bad Tag'" in bad

    rotated = await as_json(admin, "key", "rotate", key["id"], "--grace", "0")
    assert (await admin.plane.authenticate(rotated["secret"])).key_id == key["id"]
    assert (await as_json(admin, "key", "revoke", key["id"]))["status"] == "revoked"
    assert (await as_json(admin, "org", "suspend", org["id"]))["status"] == "suspended"

    usage = await as_json(admin, "usage", "--org", org["id"], "--group-by", "service")
    assert usage["totals"]["calls"] == 0
    assert "CALLS" in await meshctl(admin, "usage", "--org", org["id"])

    refused = await meshctl(admin, "org", "delete", org["id"], expect=1)
    assert "--yes" in refused
    assert (await as_json(admin, "org", "delete", org["id"], "--yes"))["deleted"] is True
    missing = await meshctl(admin, "org", "show", org["id"], expect=1)
    assert f"organization {org['id']} not found (HTTP 404)" in missing


async def test_cli_errors_are_one_clear_line(admin: Admin) -> None:
    bad = await meshctl(admin, "org", "create", "X", "--settings", '{"max_contexts": -5}', expect=1)
    assert "'settings.max_contexts' must be an integer" in bad and "Traceback" not in bad
    denied = await meshctl(admin, "org", "list", admin_key="not-the-admin-key-at-all", expect=1)
    assert "admin authentication required" in denied


async def test_secrets_through_the_cli_take_the_value_from_stdin_only(
    admin: Admin, nats_server: LocalNatsServer, mongo_url: str, mongo_db: Any
) -> None:
    settings = ServiceSettings(
        mongodb_url=mongo_url, mongodb_database=mongo_db.name, secrets_keys=new_master_key_entry()
    )
    vault = ServiceHarness(
        MeshService("vault", secrets=True), nats_server, settings=settings, signing_key_pem=SIGNING_PEM
    )
    org = (await admin.org("Vault Co"))["id"]
    value = "sk-cli-0123456789abcdef-PIPE"
    env = dict(os.environ, MESH_ADMIN_URL=str(admin.client.make_url("/admin")), MESH_ADMIN_KEY=ADMIN_KEY)
    async with vault:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(MESHCTL), "--json", "secret", "set", org, "vault", "openai",
            env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate(value.encode() + b"\n")
        assert proc.returncode == 0, err
        info = json.loads(out)
        assert info["name"] == "openai" and info["last4"] == "PIPE" and value not in out.decode()
        listing = await meshctl(admin, "secret", "list", org, "vault")
        assert "openai" in listing and info["fingerprint"] in listing and value not in listing
        assert (await as_json(admin, "secret", "delete", org, "vault", "openai"))["deleted"] is True
        missing = await meshctl(admin, "secret", "delete", org, "vault", "openai", expect=1)
        assert "no secret openai in service vault" in missing
