"""dxp benchmark: the latency one DXP call adds over a direct signed request, and concurrent
deployments followed per replica.

The sandbox (services/dxp) on 127.0.0.1, one dxp replica on a local nats-server and a store
(MONGODB_URL, else an embedded SecantusDB). "direct" is one signed GET of a deployment with
httpx; "through dxp" is `deployment_get` as a tool call on the bus (stamp, admission, project
and secrets lookup, the store-backed limit counters, signing, the same GET). "concurrent" runs
N deployments to AwaitingVerification, each followed by polling `deployment_get` (what the
monitor job does per poll), and reports the wall time and the calls per second.

    .venv/bin/python tools/bench/bench_dxp.py [--calls 200] [--deployments 50]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import httpx

from mcpmesh.dev.dxpsandbox import PREFIX, Sandbox
from mcpmesh.dev.mongoproc import LocalMongoServer
from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.dxp import signing
from mcpmesh.dxp.service import build_service
from mcpmesh.dxp.settings import DxpSettings
from mcpmesh.secrets.keys import new_master_key_entry
from mcpmesh.service import ServiceSettings
from mcpmesh.service.testing import ServiceHarness

ORG = "org-bench"


def summary(name: str, values: list[float]) -> None:
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    print(f"{name:<36} n={len(values):<5} p50={statistics.median(values):7.2f} ms  p99={p99:7.2f} ms")


async def main(calls: int, deployments: int) -> None:
    sandbox = await Sandbox(step_s=2.0, skew_s=600).start()
    project = sandbox.add_project()
    nats = LocalNatsServer()
    mongo = LocalMongoServer()
    settings = ServiceSettings(
        mongodb_url=mongo.url,
        mongodb_database=f"bench_dxp_{uuid.uuid4().hex[:8]}",
        secrets_keys=new_master_key_entry("b"),
    )
    limits = DxpSettings(allow_http=True, per_minute=10**6, per_hour=10**7)
    try:
        async with ServiceHarness(build_service(limits), nats.url, settings=settings) as dxp:
            await dxp.call_tool(
                ORG,
                "project_register",
                {
                    "name": "bench",
                    "project_id": project.project_id,
                    "client_key": project.client_key,
                    "client_secret": project.client_secret,
                    "api_url": sandbox.base_url,
                },
            )
            started = await dxp.call_tool(
                ORG,
                "deployment_start",
                {"project": "bench", "target_environment": "Integration", "packages": ["a"]},
            )
            deployment_id = started["deployment"]["id"]
            path = f"{PREFIX}/projects/{project.project_id}/deployments/{deployment_id}"
            direct, through = [], []
            async with httpx.AsyncClient() as http:
                for _ in range(calls):
                    t0 = time.perf_counter()
                    auth = signing.authorization(project.client_key, project.client_secret, "GET", path)
                    (
                        await http.get(
                            f"http://127.0.0.1:{sandbox.port}{path}", headers={"Authorization": auth}
                        )
                    ).raise_for_status()
                    direct.append((time.perf_counter() - t0) * 1000)
                    t0 = time.perf_counter()
                    await dxp.call_tool(
                        ORG, "deployment_get", {"project": "bench", "deployment_id": deployment_id}
                    )
                    through.append((time.perf_counter() - t0) * 1000)
            summary("direct signed GET", direct)
            summary("deployment_get through dxp", through)
            print(
                f"{'added per call (p50)':<36} {statistics.median(through) - statistics.median(direct):7.2f} ms"
            )

            async def follow() -> int:
                d = await dxp.call_tool(
                    ORG,
                    "deployment_start",
                    {"project": "bench", "target_environment": "Integration", "packages": ["a"]},
                )
                polls = 0
                while True:
                    polls += 1
                    view = await dxp.call_tool(
                        ORG, "deployment_get", {"project": "bench", "deployment_id": d["deployment"]["id"]}
                    )
                    if view["status"] == "AwaitingVerification":
                        return polls
                    await asyncio.sleep(0.1)

            t0 = time.perf_counter()
            polls = await asyncio.gather(*(follow() for _ in range(deployments)))
            wall = time.perf_counter() - t0
            print(f"{deployments} concurrent deployments followed to AwaitingVerification in {wall:.2f} s "
                  f"({sum(polls)} polls, {sum(polls) / wall:.0f} calls/s on one replica)")  # fmt: skip
    finally:
        await sandbox.stop()
        nats.close()
        mongo.close()


if __name__ == "__main__":
    import logging

    logging.disable(logging.INFO)  # the per-call log lines
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--deployments", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.deployments))
