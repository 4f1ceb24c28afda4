"""A long job (nominally 90 s, in steps) survives gateway and service replicas: started as a task
through gateway 1, followed through gateway 2 (tasks/get and the plain job tools), its service
replica (a process of its own) killed with SIGKILL. A job that cannot resume is failed
(`unavailable`, retryable); a resumable one is resumed by the other replica from its checkpoint,
then cancelled through a gateway, and its work stops."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Gateway, Mesh
from .replica_procs import start_service, stop_all, wait_for_replicas
from .task_client import RELATED, WAIT_S, Session, progress, until

#: Job settings of the replicas: a dead replica's job is found within about 1.5 s.
FAST_JOBS = {
    "MCPMESH_JOB_LEASE_S": "1.2",
    "MCPMESH_JOB_HEARTBEAT_S": "0.1",
    "MCPMESH_JOB_SWEEP_S": "0.2",
}
STEPS, STEP_S = 450, 0.2  # 90 s of work, were it left alone


def start_replica(mesh: Mesh, trace: Path, log: Path) -> subprocess.Popen[bytes]:
    """`crunch_replica.py`, as the dev runner starts a service, with fast job settings."""
    argv = [sys.executable, str(Path(__file__).with_name("crunch_replica.py"))]
    env = {**FAST_JOBS, "MCPMESH_SHUTDOWN_GRACE_S": "0.5", "CRUNCH_TRACE": str(trace)}
    return start_service(mesh, "crunch", argv, log, database=mesh.database + "_crunch", **env)


@pytest.fixture
async def replicas(mesh: Mesh, tmp_path: Path) -> AsyncIterator[dict[int, subprocess.Popen[bytes]]]:
    """Two `crunch` replica processes, by pid."""
    procs = [start_replica(mesh, tmp_path / "trace", tmp_path / f"crunch-{i}.log") for i in range(2)]
    yield {p.pid: p for p in procs}
    await stop_all(procs)


def trace_of(trace: Path, job_id: str) -> list[tuple[int, str]]:
    """(pid, what) of each line the handlers wrote for the job."""
    if not trace.exists():
        return []
    lines = [line.split(" ", 2) for line in trace.read_text().splitlines()]
    return [(int(pid), what) for pid, job, what in lines if job == job_id]


def steps_of(lines: list[tuple[int, str]], pid: int) -> list[int]:
    return [int(what.split()[1]) for p, what in lines if p == pid and what.startswith("step ")]


async def plain_status(gw: Gateway, key: str, job_id: str) -> dict[str, Any]:
    """`crunch_job_status` as a 2026-07-28 client calls it (no session)."""
    params = {"name": "crunch_job_status", "arguments": {"job_id": job_id}}
    status, body, _ = await gw.rpc("tools/call", params, key=key)
    assert status == 200 and not body["result"].get("isError"), body
    view: dict[str, Any] = body["result"]["structuredContent"]
    return view


@pytest.mark.parametrize("resumable", [False, True], ids=["fails", "resumes"])
async def test_a_long_job_survives_gateway_and_service_replicas(
    mesh: Mesh, replicas: dict[int, subprocess.Popen[bytes]], tmp_path: Path, resumable: bool
) -> None:
    gw1 = await mesh.gateway(task_poll_s=0.05)
    gw2 = await mesh.gateway(task_poll_s=0.05)
    for gw in (gw1, gw2):
        await wait_for_replicas(gw, "crunch", 2)
    _org, key = await mesh.tenant(scopes=["*"])
    trace = tmp_path / "trace"
    async with httpx.AsyncClient(timeout=WAIT_S) as http:
        via1 = Session(http, gw1.url, key)
        await via1.open()
        via2 = via1.on(gw2.url)  # the same session, through the other gateway replica

        tool = "crunch_resumable" if resumable else "crunch_long"
        task = await via1.start(tool, {"steps": STEPS, "step_s": STEP_S})
        task_id, job_id = task["taskId"], task["taskId"].partition("_")[2]
        working = await via2.get_until(task_id, lambda t: progress(t) >= 3)
        assert working["status"] == "working" and working["createdAt"] == task["createdAt"]
        view = await plain_status(gw2, key, job_id)
        assert view["status"] == "running" and view["total"] == STEPS and view["progress"] >= 3

        owner = trace_of(trace, job_id)[0][0]
        (survivor,) = set(replicas) - {owner}
        replicas[owner].send_signal(signal.SIGKILL)
        await asyncio.to_thread(replicas[owner].wait, 30)
        done_by_owner = steps_of(trace_of(trace, job_id), owner)

        if not resumable:
            failed = await via2.get_until(task_id, lambda t: t["status"] != "working")
            assert failed["status"] == "failed" and "stopped before it finished" in failed["statusMessage"]
            error = failed["_meta"]["mcpmesh/job"]["error"]
            assert error["code"] == "unavailable" and error["retryable"] is True
            result = await via1.result("tasks/result", {"taskId": task_id})
            assert result["isError"] is True and result["_meta"][RELATED] == {"taskId": task_id}
            assert result["structuredContent"]["code"] == "unavailable"
            assert result["structuredContent"]["retryable"] is True
            view = await plain_status(gw1, key, job_id)
            assert view["status"] == "failed" and view["error"]["code"] == "unavailable"
            assert steps_of(trace_of(trace, job_id), survivor) == []  # never run twice
            return

        # Resumed by the survivor from the last checkpoint: no step skipped, none done before it.
        resumed = await via2.get_until(
            task_id, lambda t: t["_meta"]["mcpmesh/job"]["attempts"] == 2 and progress(t) > max(done_by_owner)
        )
        assert resumed["status"] == "working"
        lines = trace_of(trace, job_id)
        (first,) = [int(what.split()[1]) for pid, what in lines if what.startswith("resumed ")]
        assert (survivor, f"resumed {first}") in lines
        assert 2 <= first <= max(done_by_owner) + 1
        assert steps_of(lines, survivor)[0] == first

        # Cancelled through gateway 1 while the survivor works on it: the work stops.
        cancelled = await via1.result("tasks/cancel", {"taskId": task_id})
        assert cancelled["status"] == "cancelled"
        await until(lambda: (survivor, "cancelled") in trace_of(trace, job_id))
        stopped = trace_of(trace, job_id)
        assert stopped[-1] == (survivor, "cancelled")
        at_cancel = await via2.result("tasks/get", {"taskId": task_id})
        await asyncio.sleep(5 * STEP_S)  # a handler still running would have done more steps
        assert trace_of(trace, job_id) == stopped
        later = await via2.result("tasks/get", {"taskId": task_id})
        assert later["status"] == "cancelled" and progress(later) == progress(at_cancel) < STEPS
        assert (await plain_status(gw2, key, job_id))["status"] == "cancelled"
