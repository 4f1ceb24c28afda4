"""The NATS that `./mesh up` runs is locked down like production: no anonymous access, and an
org publisher issued at runtime (`meshctl bus-user issue`) reaches only its own org's services
and hears only its own inbox."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import nats
import nats.errors
import pytest

from mcpmesh.bus.mcp import request_body
from mcpmesh.proto.subjects import inbox_prefix

MESHCTL = Path(__file__).resolve().parents[2] / "tools" / "meshctl"


@pytest.fixture(scope="module")
def mesh_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    state = tmp_path_factory.mktemp("mesh")
    env = dict(os.environ, MCPMESH_STATE_DIR=str(state))
    env.pop("NATS_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcpmesh.dev.runner"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (state / "dev.json").exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "dev.json never appeared"
            time.sleep(0.2)
        yield state, json.loads((state / "dev.json").read_text())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def issue(state: Path, org: str) -> dict[str, Any]:
    env = dict(os.environ, MCPMESH_STATE_DIR=str(state))
    out = subprocess.run(
        [sys.executable, str(MESHCTL), "bus-user", "issue", org],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    issued: dict[str, Any] = json.loads(out.stdout)
    return issued


def users_of(facts: dict[str, Any]) -> dict[str, str]:
    users: dict[str, str] = json.loads(Path(facts["nats_dir"], "bus.json").read_text())["users"]
    return users


async def test_nothing_connects_without_credentials(mesh_up: tuple[Path, dict[str, Any]]) -> None:
    _state, facts = mesh_up
    assert {"gateway", "svc-context"} <= set(users_of(facts))
    for url in (facts["nats_url"], facts["nats_url"].replace("nats://", "nats://svc-context:guess@")):
        with pytest.raises(nats.errors.Error):
            await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)


async def test_an_issued_org_publisher_is_confined_to_its_org(mesh_up: tuple[Path, dict[str, Any]]) -> None:
    state, facts = mesh_up
    org = facts["org_id"]
    issued = issue(state, org)
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc).lower())

    tenant = None
    for _ in range(100):  # the reload is asynchronous
        try:
            tenant = await nats.connect(
                issued["url"], inbox_prefix=issued["inbox_prefix"], error_cb=on_error, allow_reconnect=False
            )
            break
        except nats.errors.Error:
            await asyncio.sleep(0.05)
    assert tenant is not None and issued["inbox_prefix"] == inbox_prefix(org)
    try:
        # Its own org's service answers it (here: refuses, as the request carries no stamp).
        reply = await tenant.request(f"mcp.{org}.context", request_body("tools/list"), timeout=10)
        error = msgspec.json.decode(reply.data)["error"]
        assert "missing tenant stamp" in error["message"]

        hear = ["mcp.org-other.context", "mcp.>", "_INBOX.>", "_INBOX_gateway.>", "usage.>", "audit.>"]
        say = [
            "mcp.org-other.context",
            "control.tenants.delete.context",
            "control.tenants.export.context",
            f"usage.{org}.context",
            f"audit.{org}.gateway",
            f"$KV.GATEWAY_RATE_MINUTE.org.{org}.0",
            "$KV.ORG_SETTINGS.org-other",
            "$JS.API.STREAM.PURGE.USAGE",
        ]
        for subject in hear:
            await tenant.subscribe(subject)
        for subject in say:
            await tenant.publish(subject, b"{}")
        await tenant.flush()
        wanted = [f'permissions violation for subscription to "{s}"'.lower() for s in hear]
        wanted += [f'permissions violation for publish to "{s}"'.lower() for s in say]
        for _ in range(200):
            if all(any(w in e for e in errors) for w in wanted):
                break
            await asyncio.sleep(0.02)
        missing = [w for w in wanted if not any(w in e for e in errors)]
        assert not missing, missing
    finally:
        await tenant.close()
