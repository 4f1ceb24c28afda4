"""Durable jobs benchmark: start and status cost, cancel latency, and how long a dead replica's
job takes to be marked failed by a survivor.

Two replicas of one service run in this process on a local nats-server and one store
(MONGODB_URL, else the embedded one). Job settings come from the MCPMESH_JOB_* variables
(defaults: lease 15 s, heartbeat 1 s, sweep 5 s).

    .venv/bin/python tools/bench/bench_jobs.py [--starts 200] [--cancels 20] [--deaths 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
import uuid
from collections import defaultdict
from typing import Any

from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.service import JobContext, JobSettings, MeshService, ServiceSettings
from mcpmesh.service.testing import ServiceHarness

ORG = "org-bench"
SCOPES = ["bench:write", "bench:read"]


class Observed:
    """When each job's handler saw its cancellation."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.events: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def mark(self, job_id: str) -> None:
        self.at[job_id] = time.perf_counter()
        self.events[job_id].set()


def make_service(observed: Observed) -> MeshService:
    service = MeshService("bench")

    @service.job_tool(access="write")
    async def wait(job: JobContext) -> str:
        """Wait until cancelled; record when the cancellation arrived."""
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            observed.mark(job.id)
            raise
        return "never"

    @service.job_tool(access="write")
    async def quick(job: JobContext) -> str:
        return "done"

    return service


def summary(name: str, values: list[float], unit: str = "ms") -> None:
    if not values:
        return
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    print(
        f"{name:<44} n={len(values):<4} p50={statistics.median(values):8.1f} {unit}  "
        f"p99={p99:8.1f} {unit}  max={values[-1]:8.1f} {unit}"
    )


async def main(starts: int, cancels: int, deaths: int) -> None:
    nats = LocalNatsServer()
    jobs = JobSettings.from_env()
    settings = ServiceSettings(
        mongodb_url=os.environ.get("MONGODB_URL"),
        mongodb_database=f"bench_jobs_{uuid.uuid4().hex[:8]}",
        jobs=jobs,
    )
    print(f"lease {jobs.lease_s} s, heartbeat {jobs.heartbeat_s} s, sweep {jobs.sweep_s} s")
    observed = Observed()
    try:
        async with (
            ServiceHarness(make_service(observed), nats.url, settings=settings) as one,
            ServiceHarness(
                make_service(observed), nats.url, settings=settings, signing_key_pem=one.signing_key_pem
            ) as two,
        ):
            start_ms, status_ms = [], []
            for _ in range(starts):
                t0 = time.perf_counter()
                view = await one.call_tool(ORG, "quick", {}, scopes=SCOPES)
                start_ms.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                await two.call_tool(ORG, "job_status", {"job_id": view["job_id"]}, scopes=SCOPES)
                status_ms.append((time.perf_counter() - t0) * 1000)
            summary("start a job (tools/call -> job view)", start_ms)
            summary("job_status (either replica)", status_ms)

            cancel_ms: list[float] = []
            for _ in range(cancels):
                job_id = (await one.call_tool(ORG, "wait", {}, scopes=SCOPES))["job_id"]
                await asyncio.sleep(random.uniform(0.1, 1.1))  # any phase of the heartbeat
                t0 = time.perf_counter()
                await two.call_tool(ORG, "job_cancel", {"job_id": job_id}, scopes=SCOPES)
                await observed.events[job_id].wait()
                cancel_ms.append((observed.at[job_id] - t0) * 1000)
            summary("cancel -> handler sees CancelledError", cancel_ms)

        death_s: list[float] = []
        for _ in range(deaths):
            async with ServiceHarness(make_service(observed), nats.url, settings=settings) as survivor:
                doomed = ServiceHarness(
                    make_service(observed),
                    nats.url,
                    settings=settings,
                    signing_key_pem=survivor.signing_key_pem,
                )
                await doomed.__aenter__()
                assert survivor.server is not None and survivor.server.micro is not None
                await survivor.server.micro.stop()  # the start goes to the doomed replica
                job_id = (await doomed.call_tool(ORG, "wait", {}, scopes=SCOPES))["job_id"]
                await doomed.client.close()  # type: ignore[union-attr]
                await doomed.kill()
                t0 = time.perf_counter()
                tenant = survivor.service.store.for_tenant(ORG)
                collection = await tenant.collection("bench_jobs")
                while True:
                    if (await collection.find_one({"_id": job_id}, {"status": 1}))["status"] == "failed":
                        break
                    await asyncio.sleep(0.05)
                death_s.append(time.perf_counter() - t0)
        summary("replica killed -> job failed by a survivor", death_s, "s ")
    finally:
        nats.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--starts", type=int, default=200)
    parser.add_argument("--cancels", type=int, default=20)
    parser.add_argument("--deaths", type=int, default=3)
    args: Any = parser.parse_args()
    asyncio.run(main(args.starts, args.cancels, args.deaths))
