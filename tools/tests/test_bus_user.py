"""`meshctl bus-user`: an org's internal publisher gets NATS credentials at runtime, limited to
`mcp.<org>.>` and its own inbox, and loses them on revoke — on a running server, no restart."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nats
import nats.errors
import pytest

from mcpmesh.dev.natsproc import _free_port, _wait_listening, config_dir_argv, nats_server_binary
from mcpmesh.proto.ids import SERVICES
from mcpmesh.proto.subjects import inbox_prefix
from mcpmesh.tenancy.natsauth import BusConfigDir, BusUsers, mesh_users

MESHCTL = Path(__file__).resolve().parents[2] / "tools" / "meshctl"


def meshctl(*args: str, expect: int = 0, state: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("MESH_ADMIN_URL", "MESH_ADMIN_KEY")}
    env["MCPMESH_STATE_DIR"] = str(state or Path("/nonexistent"))
    proc = subprocess.run(
        [sys.executable, str(MESHCTL), *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == expect, (args, proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout if expect == 0 else proc.stderr


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[BusConfigDir, str]]:
    """nats-server on a config directory, started as `./mesh up` starts it."""
    bus_dir = BusConfigDir(tmp_path / "nats")
    bus_dir.write(BusUsers.generate(mesh_users(["context"])))
    port = _free_port()
    binary = nats_server_binary()
    assert binary is not None
    argv = config_dir_argv(binary, port, bus_dir.conf_file, bus_dir.pid_file)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, 10, lambda: proc.poll() is None)
        facts = {"nats_url": f"nats://127.0.0.1:{port}", "nats_dir": str(bus_dir.path)}
        (tmp_path / "dev.json").write_text(json.dumps(facts))  # as ./mesh up writes it
        yield bus_dir, f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def connect_until(url: str, user: str) -> nats.NATS:
    """The reload is asynchronous: the first connects may still be refused."""
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    for _ in range(100):
        try:
            nc = await nats.connect(
                url, inbox_prefix=inbox_prefix(user), error_cb=on_error, allow_reconnect=False
            )
            nc._test_errors = errors  # type: ignore[attr-defined]
            return nc
        except nats.errors.Error:
            await asyncio.sleep(0.05)
    raise AssertionError(f"{user} could not connect")


async def test_issue_then_revoke_an_org_publisher(running: tuple[BusConfigDir, str]) -> None:
    bus_dir, base = running
    state = bus_dir.path.parent
    issued = json.loads(meshctl("bus-user", "issue", "org-initech", state=state))
    assert issued["reloaded"] is True and issued["user"] == "org-initech"
    assert issued["publish"] == ["mcp.org-initech.>"] and issued["subscribe"] == ["_INBOX_org_initech.>"]
    assert oct(bus_dir.bus_file.stat().st_mode)[-3:] == "600"
    assert oct(bus_dir.conf_file.stat().st_mode)[-3:] == "600"
    url = issued["url"]
    assert url.startswith("nats://org-initech:") and url.endswith(base.removeprefix("nats://"))
    tenant = await connect_until(url, "org-initech")
    await tenant.subscribe("_INBOX.>")
    await tenant.publish("mcp.org-other.context", b"x")
    await tenant.flush()
    for _ in range(100):
        if len(tenant._test_errors) >= 2:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.02)
    errors = " ".join(tenant._test_errors).lower()  # type: ignore[attr-defined]
    assert 'permissions violation for subscription to "_inbox.>"' in errors
    assert 'permissions violation for publish to "mcp.org-other.context"' in errors

    listed = json.loads(meshctl("bus-user", "list", state=state))
    assert listed == {"tenants": ["org-initech"]}
    revoked = json.loads(meshctl("bus-user", "revoke", "org-initech", state=state))
    assert revoked == {"user": "org-initech", "revoked": True, "reloaded": True}
    for _ in range(100):
        if tenant.is_closed:
            break
        await asyncio.sleep(0.05)
    assert tenant.is_closed  # the server dropped it
    with pytest.raises(nats.errors.Error):
        await nats.connect(url, allow_reconnect=False, connect_timeout=2)


def test_bus_user_errors_are_one_clear_line(tmp_path: Path) -> None:
    bad = meshctl("bus-user", "issue", "ACME", "--dir", str(tmp_path), expect=1)
    assert "bus.json does not exist" in bad and "Traceback" not in bad
    BusConfigDir(tmp_path).write(BusUsers())
    assert "exists already" in meshctl(
        "bus-user", "init", "--dir", str(tmp_path), "--store-dir", "/x", expect=1
    )
    assert "invalid org id" in meshctl("bus-user", "issue", "ACME", "--dir", str(tmp_path), expect=1)
    assert "has no publisher credentials" in meshctl(
        "bus-user", "revoke", "org-nobody", "--dir", str(tmp_path), expect=1
    )


def test_init_makes_a_production_config_directory(tmp_path: Path) -> None:
    """Component passwords stay `$VAR` references (read from nats-server's environment);
    publishers issued later get theirs in the (private) config itself."""
    meshctl(
        "bus-user", "init", "--dir", str(tmp_path), "--store-dir", "/data/jetstream", "--http-port", "8222"
    )
    expected = BusUsers.references(mesh_users(SERVICES)).render(store_dir="/data/jetstream", http_port=8222)
    assert (tmp_path / "nats.conf").read_text() == expected
    issued = json.loads(meshctl("bus-user", "issue", "org-initech", "--dir", str(tmp_path)))
    assert issued["reloaded"] is False  # no server runs here: the operator reloads it
    conf = (tmp_path / "nats.conf").read_text()
    assert f'"password": "{issued["password"]}"' in conf and "$NATS_SVC_CONTEXT_PASSWORD" in conf
    assert 'store_dir: "/data/jetstream"' in conf and "http_port: 8222" in conf
