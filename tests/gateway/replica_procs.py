"""Service replicas run as processes of their own by the replica tests: starting them as the dev
runner does, waiting for them to register, stopping what is left of them."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

from mcpmesh.proto.subjects import service_user
from mcpmesh.tenancy.stamp import public_key_pem

from .conftest import Gateway, Mesh


def start_service(
    mesh: Mesh, service: str, argv: list[str], log: Path, *, database: str, **env: str
) -> subprocess.Popen[bytes]:
    """`argv` with the environment the dev runner gives a replica of `service` (plus `env`),
    its output appended to `log`."""
    environ = dict(
        os.environ,
        NATS_URL=mesh.nats.url_for(service_user(service)),
        MONGODB_URL=mesh.mongo_url,
        MONGODB_DATABASE=database,
        MCPMESH_STAMP_PUBLIC_KEY=public_key_pem(mesh.signing_pem),
        MCPMESH_ENV="dev",
        **env,
    )
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=environ, stdout=out, stderr=subprocess.STDOUT)


async def wait_for_replicas(gw: Gateway, service: str, n: int) -> None:
    """Until the gateway's discovery knows `n` replicas of `service`."""
    discovery = gw.state.discovery
    for _ in range(600):
        await discovery.refresh()
        view = discovery.views.get(service)
        if view is not None and len(view.replicas) >= n:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{n} {service} replicas never registered")


async def stop_all(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to the replicas still running, SIGKILL to any that does not stop within 30 s."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)
