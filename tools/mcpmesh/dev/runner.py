"""`./mesh up`: NATS, the document store, every service that exists and the gateway, on embedded defaults.

Starts each piece as a child process in its own process group, creates a demo
organization and API key through the gateway's admin API (or reuses those of the last
run, which the persistent store still holds), prints how to connect and writes the
same facts to `.mesh/dev.json`. SIGINT/SIGTERM stop everything;
if the runner is killed outright, its children still stop (`mcpmesh.dev.lifeline`).
One runner per state dir: a second one is refused while the first runs.
NATS is locked down as in production: each component connects as its own NATS user
(`.mesh/nats/bus.json`; org publishers: `meshctl bus-user issue ORG`).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcpmesh.dev.components import Component, find_components, repo_root
from mcpmesh.dev.lifeline import RUN_ID_ENV, Lifeline, die_with_parent, stop_groups, stop_leftovers
from mcpmesh.dev.mongoproc import StoreStartError, embedded_url, store_argv, wait_until_answering
from mcpmesh.dev.natsproc import config_dir_argv, nats_server_binary
from mcpmesh.proto.subjects import GATEWAY_USER, service_user

READY_TIMEOUT_S = 30.0


class StartupError(Exception):
    """One sentence for the developer: what went wrong and what to do."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def claim_port(port: int | None, flag: str) -> int:
    if port is None:
        return free_port()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise StartupError(
                f"port {port} is in use: stop what listens there or pick another with {flag} N"
            ) from None
    return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartupError(f"{what} exited at start (code {proc.returncode}): see {log}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise StartupError(f"{what} did not listen on port {port} within {READY_TIMEOUT_S:.0f}s: see {log}")


def wait_until_ready(url: str, services: set[str], timeout_s: float = 90.0) -> None:
    """Wait for the gateway's /ready (NATS up) to list every started service, so the printed
    endpoint lists every tool at once; services importing slowly only earn a warning."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200 and services <= set(json.loads(resp.read()).get("services", [])):
                    return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.25)
    print(
        f"mesh: not every service is discovered after {timeout_s:.0f}s (see {url}); going on", file=sys.stderr
    )


@dataclass
class Supervisor:
    """Starts the children of `./mesh up`, each in a process group of its own, and sees that they
    stop with it: on `stop_all`, and however the runner dies (see `mcpmesh.dev.lifeline`)."""

    state_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: Set in every child's environment (`MCPMESH_RUN_ID`) and in dev.json: proves whose a process is.
    run_id: str = field(default_factory=lambda: secrets.token_hex(8))
    lifeline: Lifeline | None = None
    lock_fd: int | None = None

    def lock(self) -> None:
        """Hold the state dir's lock for the runner's life (and its watchdog's): a second runner
        on the same dir is refused. The kernel releases it when both are gone."""
        fd = os.open(self.state_dir / "runner.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 20).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StartupError(
                f"another `./mesh up` (pid {holder}) is running on {self.state_dir} or still stopping: "
                "stop it first, or give this one its own MCPMESH_STATE_DIR"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.lock_fd = fd

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        if self.lifeline is None:
            self.lifeline = Lifeline.start(keep_fds=(self.lock_fd,) if self.lock_fd is not None else ())
        log = self.state_dir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv,
                env={**env, RUN_ID_ENV: self.run_id},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        self.lifeline.watch(proc.pid)  # its process group: it leads a new session
        self.procs[name] = proc
        return proc

    def log_of(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    def stop_all(self) -> None:
        """SIGTERM every child's process group; SIGKILL what is left of them after 10 s."""
        procs = list(self.procs.values())
        stop_groups([p.pid for p in procs], reap=lambda: [p.poll() for p in procs])
        for proc in procs:
            proc.wait()
        if self.lifeline is not None:
            for proc in procs:
                self.lifeline.forget(proc.pid)
            self.lifeline.close()


def admin_request(url: str, admin_key: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST `body` to the admin API, or GET when there is none."""
    req = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {admin_key}"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        result: dict[str, Any] = json.loads(resp.read())
        return result


def demo_tenant(base: str, admin_key: str, state: Path) -> dict[str, str]:
    """The demo org and key of the last run (`dev.json`) while both are active, else new ones."""
    try:
        last = json.loads((state / "dev.json").read_text())
        org_id, key_id = last["org_id"], last["key_id"]
        org = admin_request(f"{base}/admin/orgs/{org_id}", admin_key)
        keys = admin_request(f"{base}/admin/orgs/{org_id}/keys", admin_key)["items"]
        if org["status"] == "active" and any(k["id"] == key_id and k["status"] == "active" for k in keys):
            return {"org_id": org_id, "key_id": key_id, "api_key": last["api_key"]}
    except (OSError, ValueError, KeyError, TypeError, urllib.error.URLError):
        pass  # no previous run, or its org or key is gone: make new ones
    org = admin_request(f"{base}/admin/orgs", admin_key, {"name": "Demo", "tier": "pro"})
    key = admin_request(f"{base}/admin/orgs/{org['id']}/keys", admin_key, {"name": "dev", "scopes": ["*"]})
    return {"org_id": org["id"], "key_id": key["id"], "api_key": key["secret"]}


def persistent_secret(path: Path, make: Any) -> str:
    """A dev secret kept in .mesh so a second run reuses it (idempotent)."""
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mesh up", description=__doc__)
    parser.add_argument("--nats-port", type=int, help="NATS client port (default: a free one)")
    parser.add_argument("--gateway-port", type=int, help="gateway HTTP port (default: a free one)")
    parser.add_argument(
        "--only",
        help="start only these services (bus names, comma-separated, e.g. llm,context,debate) "
        "and the gateway; default: every service",
    )
    args = parser.parse_args(argv)

    root = repo_root()
    state = Path(os.environ.get("MCPMESH_STATE_DIR") or root / ".mesh")
    state.mkdir(parents=True, exist_ok=True)
    sup = Supervisor(state)
    stop = {"now": False}

    def on_signal(signum: int, _frame: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        sup.lock()
        stop_leftovers(state / "dev.json")
        facts = start_everything(args, root, state, sup)
        facts.update(run_id=sup.run_id, lifeline_pid=sup.lifeline.proc.pid if sup.lifeline else None)
        print_facts(facts)
        (state / "dev.json").write_text(json.dumps(facts, indent=2) + "\n")
        while not stop["now"]:
            for name, proc in sup.procs.items():
                if proc.poll() is not None:
                    raise StartupError(f"{name} stopped (code {proc.returncode}): see {sup.log_of(name)}")
            time.sleep(0.2)
        print("mesh: stopping ...", file=sys.stderr)
        return 0
    except StartupError as exc:
        print(f"mesh: {exc}", file=sys.stderr)
        return 1
    finally:
        sup.stop_all()


def start_everything(args: argparse.Namespace, root: Path, state: Path, sup: Supervisor) -> dict[str, Any]:
    nats_port = claim_port(args.nats_port, "--nats-port")
    gateway_port = claim_port(args.gateway_port, "--gateway-port")
    components = find_components(root)
    services = chosen([c for c in components if c.kind == "service" and c.name != "gateway"], args.only)
    gateway = next((c for c in components if c.name == "gateway"), None)
    found = ", ".join(c.name for c in components if c.kind == "service")
    print(f"mesh: found components: {found}" if found else "mesh: found no services yet", file=sys.stderr)

    nats_url = os.environ.get("NATS_URL") or f"nats://127.0.0.1:{nats_port}"
    pids: dict[str, int] = {}
    url_for = start_nats(sup, state, nats_port, services, pids) if "NATS_URL" not in os.environ else None

    mongo_url = os.environ.get("MONGODB_URL")
    if not mongo_url:
        mongo_port = free_port()
        mongo_url = embedded_url(mongo_port)
        proc = sup.start("mongo", store_argv(state / "mongo", mongo_port), dict(os.environ))
        try:
            wait_until_answering(mongo_url, sup.log_of("mongo"), lambda: proc.poll() is None)
        except StoreStartError as exc:
            raise StartupError(str(exc)) from None
        pids["mongo"] = proc.pid

    names = {service_name(svc) for svc in services}
    # The demo logs (Azurite) serve the log-analyzer, the DXP sandbox the dxp service.
    azurite = start_azurite(sup, state, pids) if names & {"logs", "dxp"} else None
    demo_logs = azurite[0] if azurite else None
    dxp_demo = (
        start_dxp_sandbox(sup, state, pids, azurite[1] if azurite else None) if "dxp" in names else None
    )

    from mcpmesh.secrets import new_master_key_entry
    from mcpmesh.tenancy.stamp import generate_signing_key_pem, public_key_pem

    signing_pem = persistent_secret(state / "stamp-signing-key.pem", generate_signing_key_pem)
    admin_key = persistent_secret(state / "admin-key", lambda: "mk_admin_" + secrets.token_urlsafe(24))
    env = dict(os.environ)
    env.update(
        NATS_URL=nats_url,
        MONGODB_URL=mongo_url,
        MCPMESH_STAMP_PUBLIC_KEY=public_key_pem(signing_pem),
        MCPMESH_ENV="dev",
        QDRANT_PATH=str(state / "qdrant"),
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LOGS_ALLOW_HTTP="true",  # the log-analyzer reads Azurite over http
        DXP_ALLOW_HTTP="true",  # dxp calls the local DXP sandbox over http
    )
    # Tenant secrets (services declared with `secrets=True`): one dev master key, kept and reused.
    secrets_keys = state / "secrets-keys"
    persistent_secret(secrets_keys, lambda: new_master_key_entry("dev") + "\n")
    service_env = dict(env)
    if not env.get("MCPMESH_SECRETS_KEYS"):
        service_env["MCPMESH_SECRETS_KEYS_FILE"] = str(secrets_keys)
    for svc in services:
        svc_env = (
            dict(service_env, NATS_URL=url_for(service_user(service_name(svc)))) if url_for else service_env
        )
        proc = sup.start(svc.name, [sys.executable, "-m", svc.module], svc_env)
        pids[svc.name] = proc.pid

    facts: dict[str, Any] = {
        "nats_url": nats_url,
        "mongodb_url": mongo_url,
        "components": [c.name for c in components],
        "pids": pids,
    }
    if demo_logs:
        facts["demo_logs_sas_url"] = demo_logs
    facts["dxp_demo_project"] = dxp_demo
    if url_for is not None:
        facts["nats_dir"] = str(state / "nats")
    if gateway is None:
        print("mesh: no gateway yet: services answer on NATS only", file=sys.stderr)
        return facts

    gw_env = dict(
        env,
        NATS_URL=url_for(GATEWAY_USER) if url_for else nats_url,
        GATEWAY_PORT=str(gateway_port),
        MCPMESH_ADMIN_KEY=admin_key,
        MCPMESH_STAMP_SIGNING_KEY=signing_pem,
    )
    proc = sup.start("gateway", [sys.executable, "-m", gateway.module], gw_env)
    wait_for_port(gateway_port, proc, "gateway", sup.log_of("gateway"))
    pids["gateway"] = proc.pid
    base = f"http://127.0.0.1:{gateway_port}"
    wait_until_ready(f"{base}/ready", {service_name(svc) for svc in services})
    try:
        demo = demo_tenant(base, admin_key, state)
    except (urllib.error.URLError, KeyError) as exc:
        raise StartupError(
            f"could not create the demo organization through the admin API ({exc}): see {sup.log_of('gateway')}"
        ) from None
    facts.update(mcp_url=f"{base}/mcp", **demo, admin_url=f"{base}/admin", admin_key=admin_key)
    return facts


def start_azurite(sup: Supervisor, state: Path, pids: dict[str, int]) -> tuple[str, int] | None:
    """Azurite (the Azure Blob emulator) with a demo container of generated App Service logs;
    (the container's SAS URL, Azurite's port), or None when npm is missing (said, not fatal)."""
    from mcpmesh.dev.azuriteproc import LocalAzurite, azurite_blob_binary, blob_argv, seed_demo

    try:
        binary = azurite_blob_binary()
    except RuntimeError as exc:
        print(f"mesh: no Azurite, so no demo logs: {exc}", file=sys.stderr)
        return None
    server = LocalAzurite(port=free_port(), location=state / "azurite")
    proc = sup.start("azurite", blob_argv(binary, server.port, server.location), dict(os.environ))
    wait_for_port(server.port, proc, "azurite", sup.log_of("azurite"))
    pids["azurite"] = proc.pid
    return seed_demo(server), server.port


def start_dxp_sandbox(
    sup: Supervisor, state: Path, pids: dict[str, int], azurite_port: int | None
) -> dict[str, str]:
    """The DXP sandbox (services/dxp: a fake Deployment API, storage in Azurite) with a demo
    project kept in .mesh/dxp-sandbox.json; that project's registration arguments."""
    port = free_port()
    project_file = state / "dxp-sandbox.json"
    argv = [
        sys.executable,
        "-m",
        "mcpmesh.dev.dxpsandbox",
        "--port",
        str(port),
        "--project-file",
        str(project_file),
    ]
    proc = sup.start(
        "dxp-sandbox",
        argv + (["--azurite-port", str(azurite_port)] if azurite_port else []),
        dict(os.environ),
    )
    wait_for_port(port, proc, "dxp-sandbox", sup.log_of("dxp-sandbox"))
    pids["dxp-sandbox"] = proc.pid
    project = json.loads(project_file.read_text())
    return {"name": "demo", **project, "api_url": f"http://127.0.0.1:{port}/api/v1.0/"}


def chosen(services: list[Component], only: str | None) -> list[Component]:
    """The services `--only` names (all of them without it); an unknown name is refused."""
    if only is None:
        return services
    wanted = {name.strip() for name in only.split(",") if name.strip()}
    unknown = wanted - {service_name(svc) for svc in services}
    if unknown or not wanted:
        known = ", ".join(sorted(service_name(svc) for svc in services))
        raise StartupError(f"--only names no service {', '.join(sorted(unknown))}: pick from {known}")
    return [svc for svc in services if service_name(svc) in wanted]


def service_name(component: Component) -> str:
    """The bus name of a service component: its package (`mcpmesh.context` -> `context`)."""
    return component.module.rsplit(".", 1)[-1]


def start_nats(
    sup: Supervisor, state: Path, port: int, services: list[Component], pids: dict[str, int]
) -> Callable[[str], str]:
    """nats-server locked down as in production: the gateway and each service connect as their
    own NATS user (passwords kept in .mesh/nats/bus.json, org publishers issued there by
    `meshctl bus-user`). Returns the URL, with credentials, of each user."""
    from mcpmesh.tenancy.natsauth import BusConfigDir, mesh_users

    binary = nats_server_binary()
    if binary is None:
        raise StartupError("nats-server is not installed: install it or set NATS_URL, then run again")
    bus_dir = BusConfigDir(state / "nats")
    users, _store, _port = bus_dir.load()
    users.ensure(mesh_users(service_name(c) for c in services))
    bus_dir.write(users)
    argv = config_dir_argv(binary, port, bus_dir.conf_file, bus_dir.pid_file)
    proc = sup.start("nats", argv, dict(os.environ))
    wait_for_port(port, proc, "nats-server", sup.log_of("nats"))
    pids["nats"] = proc.pid
    base = f"nats://127.0.0.1:{port}"
    return lambda user: users.url(base, user)


def print_facts(facts: dict[str, Any]) -> None:
    from mcpmesh.bus import redact_url

    print(f"NATS        {facts['nats_url']}")
    print(f"MongoDB     {redact_url(facts['mongodb_url'])}")
    if "mcp_url" not in facts:
        return
    print(f"MCP         {facts['mcp_url']}")
    print(f"API key     {facts['api_key']}   (org {facts['org_id']})")
    print(f"Admin API   {facts['admin_url']}   (admin key in .mesh/admin-key)")
    if "demo_logs_sas_url" in facts:
        print(f"Demo logs   logs_source_add(name='demo', sas_url='{facts['demo_logs_sas_url']}')")
    if facts.get("dxp_demo_project"):
        print(f"DXP demo    dxp_project_register({json.dumps(facts['dxp_demo_project'])})")
    print("\nMCP Inspector:  npx @modelcontextprotocol/inspector  → Streamable HTTP, URL above,")
    print(f"                header x-api-key: {facts['api_key']}")
    print("Claude Desktop (claude_desktop_config.json):")
    config = {
        "mcpServers": {
            "mcpmesh": {
                "command": "npx",
                "args": ["mcp-remote", facts["mcp_url"], "--header", f"x-api-key:{facts['api_key']}"],
            }
        }
    }
    print(json.dumps(config, indent=2))
    print("Tools are named <service>_<tool> (e.g. context_create), as every MCP client accepts.")
    print("\nCtrl-C stops everything.")


if __name__ == "__main__":
    sys.exit(main())
