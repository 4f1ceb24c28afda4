"""Durable jobs on a real nats-server and one shared store, with two replicas of one service.

Replica 1 starts a job and then stops serving requests (its micro endpoint is stopped, its
jobs keep running), so every later call is answered by replica 2: status, result and cancel
come from the store, not from the replica doing the work.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from mcp.server.mcpserver import Context

from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.proto.jobs import is_job_id
from mcpmesh.service import Call, JobContext, JobSettings, MeshService, ServiceSettings
from mcpmesh.service.jobs import JobRunner
from mcpmesh.service.testing import ServiceHarness, ToolFailed
from mcpmesh.tenancy.scopes import covers

ORG_A = "org-acme"
ORG_B = "org-globex"
WRITE = ["work:write", "work:read"]
FAST = JobSettings(lease_s=1.2, heartbeat_s=0.1, sweep_s=0.2, retention_h=1.0)
WAIT_S = 15.0  # bound on every wait below; none of them asserts a duration


@dataclass
class Probe:
    """What the handlers of every replica in a test did, and gates that hold them at a step."""

    done: list[tuple[str, int]] = field(default_factory=list)  # (replica, step) completed
    cancelled: list[str] = field(default_factory=list)  # replicas whose handler saw the cancellation
    gates: dict[tuple[str, str, int], asyncio.Event] = field(default_factory=dict)
    reached: dict[tuple[str, str, int], asyncio.Event] = field(default_factory=dict)

    def hold(self, replica: str, step: int, tool: str = "count") -> None:
        self.gates[(replica, tool, step)] = asyncio.Event()
        self.reached[(replica, tool, step)] = asyncio.Event()

    def release(self, replica: str, step: int, tool: str = "count") -> None:
        self.gates[(replica, tool, step)].set()

    async def wait_reached(self, replica: str, step: int, tool: str = "count") -> None:
        await asyncio.wait_for(self.reached[(replica, tool, step)].wait(), WAIT_S)

    async def before(self, replica: str, step: int, tool: str) -> None:
        key = (replica, tool, step)
        if key in self.gates:
            self.reached[key].set()
            await self.gates[key].wait()


def make_service(probe: Probe, replica: str) -> MeshService:
    """One replica of the test service `work` (every replica is built the same way)."""
    svc = MeshService("work")

    @svc.job_tool(access="write", budget_s=60)
    async def count(n: int, job: JobContext) -> dict[str, int]:
        """Count to n, reporting each step."""
        try:
            for i in range(1, n + 1):
                await probe.before(replica, i, "count")
                await job.progress(i, n, f"counted {i}", partial={"last": i})
                probe.done.append((replica, i))
                await asyncio.sleep(0.002)  # a step's own work
        except asyncio.CancelledError:
            probe.cancelled.append(replica)
            raise
        return {"counted": n}

    @svc.job_tool(access="write", resumable=True, budget_s=60)
    async def steps(n: int, job: JobContext) -> dict[str, int]:
        """n steps; each completed step is saved in the checkpoint, so a resume skips it."""
        first = int((job.checkpoint or {}).get("next", 1))
        for i in range(first, n + 1):
            await probe.before(replica, i, "steps")
            probe.done.append((replica, i))
            await job.save_checkpoint({"next": i + 1})
            await job.progress(i, n)
        return {"steps": n, "attempt": job.attempt}

    @svc.job_tool(access="write")
    async def nap(job: JobContext) -> str:
        await probe.before(replica, 1, "nap")
        return "rested"

    @svc.job_tool(access="write", budget_s=0.3)
    async def forever(job: JobContext) -> str:
        await asyncio.Event().wait()
        return "never"

    @svc.job_tool(access="write")
    async def refuse(job: JobContext) -> str:
        raise MeshException(ErrorCode.LIMIT_EXCEEDED, "the free tier allows 3 reindexes a day")

    @svc.job_tool(access="write")
    async def crash(job: JobContext) -> str:
        raise RuntimeError("secret internal detail /etc/passwd")

    @svc.job_tool(access="write")
    async def huge(job: JobContext) -> str:
        return "x" * (FAST.value_max_bytes + 1)

    @svc.job_tool(access="write", idempotency_key="op_id")
    async def keyed(n: int, job: JobContext, op_id: str | None = None) -> dict[str, int]:
        """Count to n once per op_id."""
        await probe.before(replica, 1, "keyed")
        probe.done.append((replica, n))
        return {"counted": n}

    async def may_call_other(call: Call, arguments: dict[str, Any]) -> None:
        if not covers(call.stamp.scopes, "other:read"):
            raise MeshException(
                ErrorCode.FORBIDDEN, f"the job calls `other` for {arguments['what']}: add other:read"
            )

    @svc.job_tool(access="write", start_check=may_call_other)
    async def guarded(what: str, job: JobContext) -> str:
        return f"asked other for {what}"

    @svc.tool(access="read")
    async def ping() -> str:
        return "pong"

    return svc


@pytest.fixture
def settings(mongo_url: str, mongo_db: Any) -> ServiceSettings:
    return ServiceSettings(
        mongodb_url=mongo_url,
        mongodb_database=mongo_db.name,
        shutdown_grace_s=0.5,
        jobs=FAST,
    )


@pytest.fixture
async def replicas(
    nats_server: LocalNatsServer, settings: ServiceSettings
) -> AsyncIterator[Callable[[Probe, str], Awaitable[ServiceHarness]]]:
    """Start replicas of `work` on one NATS and one store; all are stopped at the end."""
    async with contextlib.AsyncExitStack() as stack:
        key: list[str] = []

        async def start(probe: Probe, name: str, jobs: JobSettings = FAST) -> ServiceHarness:
            harness = ServiceHarness(
                make_service(probe, name),
                nats_server,
                settings=replace(settings, jobs=jobs),
                signing_key_pem=key[0] if key else None,
            )
            key.append(harness.signing_key_pem)
            return await stack.enter_async_context(harness)

        yield start


async def stop_serving(replica: ServiceHarness) -> None:
    """The replica takes no more requests; the jobs it runs carry on."""
    assert replica.server is not None and replica.server.micro is not None
    await replica.server.micro.stop()


async def status_until(
    replica: ServiceHarness, job_id: str, done: Callable[[dict[str, Any]], bool], org: str = ORG_A
) -> dict[str, Any]:
    async def poll() -> dict[str, Any]:
        while True:
            view: dict[str, Any] = await replica.call_tool(
                org, "job_status", {"job_id": job_id}, scopes=WRITE
            )
            if done(view):
                return view
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(poll(), WAIT_S)


async def until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while True:
            if condition():
                return
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), WAIT_S)


def finished(view: dict[str, Any]) -> bool:
    return view["status"] in ("succeeded", "failed", "cancelled")


async def test_a_job_answers_at_once_and_any_replica_reports_it(replicas: Any) -> None:
    probe = Probe()
    probe.hold("r1", 3)
    r1 = await replicas(probe, "r1")
    started = await r1.call_tool(ORG_A, "count", {"n": 5}, scopes=WRITE)
    assert is_job_id(started["job_id"]) and started["status"] in ("queued", "running")
    assert started["tool"] == "count" and started["started_by"] == "key-test"
    job_id = started["job_id"]
    await probe.wait_reached("r1", 3)  # steps 1 and 2 done, the handler holds before step 3

    r2 = await replicas(probe, "r2")
    await stop_serving(r1)
    view = await r2.call_tool(ORG_A, "job_status", {"job_id": job_id}, scopes=["work:read"])
    assert view["status"] == "running"
    assert view["created_at"] == started["created_at"]  # the start's view and the stored record agree
    assert (view["progress"], view["total"], view["message"]) == (2, 5, "counted 2")
    assert view["partial"] == {"last": 2}
    with pytest.raises(ToolFailed, match="is still running, progress 2 of 5"):
        await r2.call_tool(ORG_A, "job_result", {"job_id": job_id}, scopes=["work:read"])

    # Another org knows nothing of it, whatever it asks.
    for tool in ("job_status", "job_result", "job_cancel"):
        with pytest.raises(ToolFailed, match="not_found: no job"):
            await r2.call_tool(ORG_B, tool, {"job_id": job_id}, scopes=WRITE)
    assert (await r2.call_tool(ORG_B, "jobs", {}, scopes=WRITE))["jobs"] == []

    probe.release("r1", 3)
    view = await status_until(r2, job_id, finished)
    assert view["status"] == "succeeded" and view["progress"] == 5 and view["error"] is None
    assert view["finished_at"] and view["expires_at"] > view["finished_at"]
    assert await r2.call_tool(ORG_A, "job_result", {"job_id": job_id}, scopes=["work:read"]) == {"counted": 5}
    assert probe.done == [("r1", i) for i in range(1, 6)]
    listed = await r2.call_tool(ORG_A, "jobs", {}, scopes=["work:read"])
    assert [j["job_id"] for j in listed["jobs"]] == [job_id] and listed["next_cursor"] is None


async def test_cancel_from_another_replica_stops_the_work(replicas: Any) -> None:
    probe = Probe()
    probe.hold("r1", 3)
    r1 = await replicas(probe, "r1")
    job_id = (await r1.call_tool(ORG_A, "count", {"n": 5}, scopes=WRITE))["job_id"]
    await probe.wait_reached("r1", 3)
    r2 = await replicas(probe, "r2")
    await stop_serving(r1)

    with pytest.raises(MeshException, match="missing scope 'work:write'"):
        await r2.call_tool(ORG_A, "job_cancel", {"job_id": job_id}, scopes=["work:read"])
    view = await r2.call_tool(ORG_A, "job_cancel", {"job_id": job_id}, scopes=WRITE)
    assert view["status"] == "cancelled" and view["message"] == "cancelled by key-test"

    await until(lambda: probe.cancelled == ["r1"])  # the handler on r1 saw the cancellation
    await until(lambda: not r1.service.jobs.local)  # type: ignore[union-attr]
    probe.release("r1", 3)  # nothing is waiting any more
    await asyncio.sleep(3 * FAST.heartbeat_s)
    view = await r2.call_tool(ORG_A, "job_status", {"job_id": job_id}, scopes=WRITE)
    assert view["status"] == "cancelled" and view["progress"] == 2  # nothing written after the cancel
    assert probe.done == [("r1", 1), ("r1", 2)]
    again = await r2.call_tool(ORG_A, "job_cancel", {"job_id": job_id}, scopes=WRITE)
    assert again == view  # cancelling a finished job changes nothing
    with pytest.raises(ToolFailed, match="has no result: cancelled by key-test"):
        await r2.call_tool(ORG_A, "job_result", {"job_id": job_id}, scopes=WRITE)


async def test_a_busy_handler_writes_nothing_after_its_cancel(replicas: Any) -> None:
    r1 = await replicas(Probe(), "r1")
    job_id = (await r1.call_tool(ORG_A, "count", {"n": 100_000}, scopes=WRITE))["job_id"]
    await status_until(r1, job_id, lambda v: (v["progress"] or 0) >= 3)
    await r1.call_tool(ORG_A, "job_cancel", {"job_id": job_id}, scopes=WRITE)
    await until(lambda: not r1.service.jobs.local)  # type: ignore[union-attr]
    stopped = await r1.call_tool(ORG_A, "job_status", {"job_id": job_id}, scopes=WRITE)
    await asyncio.sleep(3 * FAST.heartbeat_s)
    later = await r1.call_tool(ORG_A, "job_status", {"job_id": job_id}, scopes=WRITE)
    assert later == stopped and later["status"] == "cancelled"
    assert 3 <= later["progress"] < 100_000


async def test_a_dead_replicas_job_is_marked_failed_by_a_survivor(replicas: Any) -> None:
    probe = Probe()
    probe.hold("r1", 3)
    r1 = await replicas(probe, "r1")
    job_id = (await r1.call_tool(ORG_A, "count", {"n": 5}, scopes=WRITE))["job_id"]
    await probe.wait_reached("r1", 3)
    r2 = await replicas(probe, "r2")
    await stop_serving(r1)  # so no request of this test is routed to it as it dies (a routing matter)
    await r1.kill()  # no release, no write: only its lease running out tells anyone

    view = await status_until(r2, job_id, finished)
    assert view["status"] == "failed"
    assert view["error"]["code"] == "unavailable" and view["error"]["retryable"] is True
    assert "replica running this job stopped before it finished: start it again" in view["error"]["message"]
    assert view["progress"] == 2 and view["attempts"] == 1
    assert probe.done == [("r1", 1), ("r1", 2)]  # never run again
    with pytest.raises(
        ToolFailed, match=r"unavailable: job \w+ failed: the replica running this job stopped"
    ):
        await r2.call_tool(ORG_A, "job_result", {"job_id": job_id}, scopes=WRITE)


async def test_a_resumable_job_resumes_from_its_checkpoint_on_a_survivor(replicas: Any) -> None:
    probe = Probe()
    probe.hold("r1", 3, "steps")
    r1 = await replicas(probe, "r1")
    job_id = (await r1.call_tool(ORG_A, "steps", {"n": 6}, scopes=WRITE))["job_id"]
    await probe.wait_reached("r1", 3, "steps")
    r2 = await replicas(probe, "r2")
    await stop_serving(r1)
    await r1.kill()

    view = await status_until(r2, job_id, finished)
    assert view["status"] == "succeeded" and view["attempts"] == 2 and view["resumable"] is True
    assert await r2.call_tool(ORG_A, "job_result", {"job_id": job_id}, scopes=WRITE) == {
        "steps": 6,
        "attempt": 2,
    }
    assert probe.done == [("r1", 1), ("r1", 2), ("r2", 3), ("r2", 4), ("r2", 5), ("r2", 6)]
    assert set(Counter(step for _, step in probe.done).values()) == {1}  # every step exactly once


async def test_a_resumable_job_interrupted_too_often_fails(replicas: Any) -> None:
    probe = Probe()
    probe.hold("r1", 2, "steps")
    r1 = await replicas(probe, "r1")
    job_id = (await r1.call_tool(ORG_A, "steps", {"n": 3}, scopes=WRITE))["job_id"]
    await probe.wait_reached("r1", 2, "steps")
    r2 = await replicas(probe, "r2", replace(FAST, max_attempts=1))
    await stop_serving(r1)
    await r1.kill()

    view = await status_until(r2, job_id, finished)
    assert view["status"] == "failed" and view["attempts"] == 1
    assert "interrupted 1 times" in view["error"]["message"]
    assert probe.done == [("r1", 1)]


async def test_deleting_the_tenant_stops_its_running_jobs(replicas: Any) -> None:
    probe = Probe()
    probe.hold("r1", 2)
    r1 = await replicas(probe, "r1")
    kept = (await r1.call_tool(ORG_B, "steps", {"n": 1}, scopes=WRITE))["job_id"]
    await status_until(r1, kept, finished, org=ORG_B)
    await r1.call_tool(ORG_A, "count", {"n": 3}, scopes=WRITE)
    await probe.wait_reached("r1", 2)

    reply = await r1.tenant_command("delete", ORG_A)
    assert reply.dropped == ["work_jobs"]
    await until(lambda: probe.cancelled == ["r1"])  # the next heartbeat found its record gone
    assert (await r1.call_tool(ORG_A, "jobs", {}, scopes=WRITE))["jobs"] == []
    assert (await r1.call_tool(ORG_B, "job_status", {"job_id": kept}, scopes=WRITE))["status"] == "succeeded"


async def test_sigterm_finishes_what_it_can_and_releases_the_rest(replicas: Any) -> None:
    probe = Probe()
    for tool in ("count", "steps", "nap"):
        probe.hold("r1", 2 if tool != "nap" else 1, tool)
    r1 = await replicas(probe, "r1")
    plain = (await r1.call_tool(ORG_A, "count", {"n": 3}, scopes=WRITE))["job_id"]
    resumable = (await r1.call_tool(ORG_A, "steps", {"n": 3}, scopes=WRITE))["job_id"]
    quick = (await r1.call_tool(ORG_A, "nap", {}, scopes=WRITE))["job_id"]
    for tool, step in (("count", 2), ("steps", 2), ("nap", 1)):
        await probe.wait_reached("r1", step, tool)
    r2 = await replicas(probe, "r2")
    await stop_serving(r1)
    assert r1.server is not None and r1.service.jobs is not None
    stopping = asyncio.create_task(r1.server.stop(grace_s=1.0))  # SIGTERM
    await until(lambda: r1.service.jobs._stopping)  # type: ignore[union-attr]
    probe.release("r1", 1, "nap")  # this one finishes within the grace period; the others are held
    await stopping
    r1.server = None

    assert (await status_until(r2, quick, finished))["attempts"] == 1
    assert await r2.call_tool(ORG_A, "job_result", {"job_id": quick}, scopes=WRITE) == "rested"
    failed = await status_until(r2, plain, finished)  # released: no wait for its lease
    assert failed["status"] == "failed" and "stopped before it finished" in failed["error"]["message"]
    resumed = await status_until(r2, resumable, finished)
    assert resumed["status"] == "succeeded" and resumed["attempts"] == 2
    assert [d for d in probe.done if d[0] == "r2"] == [("r2", 2), ("r2", 3)]  # steps 2 and 3, once


async def test_failures_are_recorded_as_mesh_errors_without_internals(replicas: Any) -> None:
    r1 = await replicas(Probe(), "r1")
    expected = {
        "refuse": ("limit_exceeded", False, "the free tier allows 3 reindexes a day"),
        "crash": ("internal", False, "internal error in work_crash: the failure was logged"),
        "huge": ("limit_exceeded", False, "a job keeps: return a reference to the data"),
        "forever": ("timeout", True, "the job ran past its time budget of 0.3 s"),
    }
    for tool, (code, retryable, text) in expected.items():
        job_id = (await r1.call_tool(ORG_A, tool, {}, scopes=WRITE))["job_id"]
        view = await status_until(r1, job_id, finished)
        assert view["status"] == "failed", tool
        assert view["error"]["code"] == code and view["error"]["retryable"] is retryable, view
        assert text in view["error"]["message"]
        assert "passwd" not in str(view)
        with pytest.raises(ToolFailed, match=f"{code}: job {job_id} failed"):
            await r1.call_tool(ORG_A, "job_result", {"job_id": job_id}, scopes=WRITE)


async def test_jobs_beyond_the_replica_limit_wait_queued(replicas: Any) -> None:
    probe = Probe()
    probe.hold("r1", 1)
    r1 = await replicas(probe, "r1", replace(FAST, max_running=1))
    first = (await r1.call_tool(ORG_A, "count", {"n": 1}, scopes=WRITE))["job_id"]
    await probe.wait_reached("r1", 1)
    second = (await r1.call_tool(ORG_A, "steps", {"n": 1}, scopes=WRITE))["job_id"]
    await asyncio.sleep(3 * FAST.heartbeat_s)
    assert (await r1.call_tool(ORG_A, "job_status", {"job_id": second}, scopes=WRITE))["status"] == "queued"
    listed = await r1.call_tool(ORG_A, "jobs", {"status": "queued"}, scopes=WRITE)
    assert [j["job_id"] for j in listed["jobs"]] == [second]
    probe.release("r1", 1)
    assert (await status_until(r1, first, finished))["status"] == "succeeded"
    assert (await status_until(r1, second, finished))["status"] == "succeeded"


async def test_jobs_lists_newest_first_page_by_page(replicas: Any) -> None:
    r1 = await replicas(Probe(), "r1")
    ids = [(await r1.call_tool(ORG_A, "count", {"n": 1}, scopes=WRITE))["job_id"] for _ in range(5)]
    for job_id in ids:
        await status_until(r1, job_id, finished)
    seen: list[str] = []
    cursor = None
    while True:
        args = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await r1.call_tool(ORG_A, "jobs", args, scopes=["work:read"])
        assert len(page["jobs"]) <= 2 and all(j["partial"] is None for j in page["jobs"])
        seen += [j["job_id"] for j in page["jobs"]]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == sorted(ids, reverse=True)
    assert (await r1.call_tool(ORG_A, "jobs", {"status": "failed"}, scopes=["work:read"]))["jobs"] == []
    with pytest.raises(ToolFailed, match="cursor must be the next_cursor"):
        await r1.call_tool(ORG_A, "jobs", {"cursor": "x"}, scopes=["work:read"])
    with pytest.raises(ToolFailed, match="job_id must be the 28-character id"):
        await r1.call_tool(ORG_A, "job_status", {"job_id": "../x"}, scopes=["work:read"])


async def test_job_tools_are_listed_with_their_scopes_annotations_and_arguments(replicas: Any) -> None:
    r1 = await replicas(Probe(), "r1")
    tools = {t["name"]: t for t in (await r1.request(ORG_A, "tools/list", scopes=["work:read"]))["tools"]}
    assert {"job_status", "job_result", "job_cancel", "jobs", "count", "steps"} <= set(tools)
    scope = {name: t["_meta"]["mcpmesh/scope"] for name, t in tools.items()}
    assert scope["job_status"] == scope["job_result"] == scope["jobs"] == "work:read"
    assert scope["job_cancel"] == scope["count"] == "work:write"
    assert tools["job_status"]["annotations"]["readOnlyHint"] is True
    assert tools["job_cancel"]["annotations"]["destructiveHint"] is True
    assert tools["count"]["annotations"]["idempotentHint"] is False  # each call starts a job
    assert tools["steps"]["_meta"]["mcpmesh/job"] == {"resumable": True, "budget_s": 60}
    schema = tools["count"]["inputSchema"]
    assert set(schema["properties"]) == {"n"} and schema["required"] == ["n"]
    assert "work_job_status" in tools["count"]["description"]
    with pytest.raises(MeshException, match="missing scope 'work:write'"):
        await r1.call_tool(ORG_A, "count", {"n": 1}, scopes=["work:read"])


def test_job_tools_are_checked_when_declared() -> None:
    svc = MeshService("work")
    with pytest.raises(TypeError, match="needs a parameter annotated `JobContext`"):

        @svc.job_tool()
        async def no_job(n: int) -> int:
            return n

    with pytest.raises(TypeError, match="not the request's Context"):

        @svc.job_tool()
        async def with_ctx(job: JobContext, ctx: Context) -> int:
            return 1

    with pytest.raises(ValueError, match="taken by the kit's job tools"):

        @svc.job_tool(name="jobs")
        async def named(job: JobContext) -> int:
            return 1

    async def fine(job: JobContext) -> int:
        return 1

    with pytest.raises(ValueError, match="reserved for the kit's job records"):
        MeshService("work", store_kinds={"work_jobs": []}).job_tool()(fine)


def test_job_settings_refuse_a_heartbeat_too_slow_for_the_lease() -> None:
    with pytest.raises(ValueError, match="at most a third of MCPMESH_JOB_LEASE_S"):
        JobSettings(lease_s=2, heartbeat_s=1)
    with pytest.raises(ValueError, match="MCPMESH_JOB_MAX_RUNNING must be positive"):
        JobSettings(max_running=0)


@pytest.mark.parametrize("how", ["stop", "abandon"])
async def test_stopping_ends_upkeep_loops_that_lost_a_cancel(how: str) -> None:
    """On Python 3.11 a cancel racing a result in `asyncio.wait_for` is lost: the heartbeat and
    sweep loops are cancelled until they are done, not once (they ran on after the stop)."""
    runner = JobRunner(MeshService("work"))
    cancels: Counter[str] = Counter()

    async def upkeep(name: str) -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancels[name] += 1
                if cancels[name] > 1:
                    raise  # the second cancel gets through

    loop = asyncio.get_running_loop()
    heartbeat = runner._heartbeat_task = loop.create_task(upkeep("heartbeat"))
    sweep = runner._sweep_task = loop.create_task(upkeep("sweep"))
    runner._stopping = False
    await asyncio.sleep(0)  # both in their sleep
    await asyncio.wait_for(runner.stop(grace_s=0) if how == "stop" else runner.abandon(), WAIT_S)
    assert heartbeat.cancelled() and sweep.cancelled()
    assert cancels == {"heartbeat": 2, "sweep": 2}


async def test_a_keyed_start_repeated_answers_with_the_first_job(replicas: Any) -> None:
    probe = Probe()
    probe.hold("r1", 1, "keyed")
    r1 = await replicas(probe, "r1")
    first = await r1.call_tool(ORG_A, "keyed", {"n": 3, "op_id": "op-1"}, scopes=WRITE)
    await probe.wait_reached("r1", 1, "keyed")
    again = await r1.call_tool(ORG_A, "keyed", {"n": 3, "op_id": "op-1"}, scopes=WRITE)
    assert again["job_id"] == first["job_id"] and again["status"] == "running"
    probe.release("r1", 1, "keyed")
    done = await status_until(r1, first["job_id"], finished)
    later = await r1.call_tool(ORG_A, "keyed", {"n": 3, "op_id": "op-1"}, scopes=WRITE)
    assert later["job_id"] == first["job_id"] and later["status"] == done["status"] == "succeeded"
    assert probe.done == [("r1", 3)]  # one run however often it was started

    # The same key with other arguments is refused; another key, no key or another org starts anew.
    with pytest.raises(
        ToolFailed, match=r"this op_id already started job \w+ with other arguments"
    ) as refused:
        await r1.call_tool(ORG_A, "keyed", {"n": 4, "op_id": "op-1"}, scopes=WRITE)
    assert refused.value.error is not None and refused.value.error.code is ErrorCode.CONFLICT
    others = [
        await r1.call_tool(ORG_A, "keyed", {"n": 3, "op_id": "op-2"}, scopes=WRITE),
        await r1.call_tool(ORG_A, "keyed", {"n": 3}, scopes=WRITE),
        await r1.call_tool(ORG_A, "keyed", {"n": 3}, scopes=WRITE),
        await r1.call_tool(ORG_B, "keyed", {"n": 3, "op_id": "op-1"}, scopes=WRITE),
    ]
    assert len({first["job_id"], *(o["job_id"] for o in others)}) == 5
    for other in others[:3]:
        await status_until(r1, other["job_id"], finished)
    await status_until(r1, others[3]["job_id"], finished, org=ORG_B)
    assert len(probe.done) == 5


async def test_racing_keyed_starts_on_two_replicas_run_one_job(replicas: Any) -> None:
    probe = Probe()
    r1 = await replicas(probe, "r1")
    r2 = await replicas(probe, "r2")
    starts = [
        replica.call_tool(ORG_A, "keyed", {"n": 2, "op_id": "race"}, scopes=WRITE) for replica in (r1, r2) * 4
    ]
    views = await asyncio.gather(*starts)
    assert len({view["job_id"] for view in views}) == 1
    await status_until(r1, views[0]["job_id"], finished)
    assert len(probe.done) == 1


async def test_a_keyed_job_tool_publishes_its_key(replicas: Any) -> None:
    r1 = await replicas(Probe(), "r1")
    tools = {t["name"]: t for t in (await r1.request(ORG_A, "tools/list", scopes=["work:read"]))["tools"]}
    assert tools["keyed"]["_meta"]["mcpmesh/idempotency_key"] == "op_id"
    assert "mcpmesh/idempotency_key" not in tools["count"]["_meta"]
    assert set(tools["keyed"]["inputSchema"]["properties"]) == {"n", "op_id"}
    svc = MeshService("work")
    with pytest.raises(ValueError, match="idempotency_key 'job' is not one of its arguments"):

        @svc.job_tool(idempotency_key="job")
        async def wrong(job: JobContext) -> int:
            return 1


async def test_a_start_check_refuses_before_any_job_is_recorded(replicas: Any) -> None:
    r1 = await replicas(Probe(), "r1")
    with pytest.raises(ToolFailed) as refused:
        await r1.call_tool(ORG_A, "guarded", {"what": "prices"}, scopes=WRITE)
    assert refused.value.error is not None and refused.value.error.code is ErrorCode.FORBIDDEN
    assert refused.value.error.message == "the job calls `other` for prices: add other:read"
    assert (await r1.call_tool(ORG_A, "jobs", {}, scopes=WRITE))["jobs"] == []
    started = await r1.call_tool(ORG_A, "guarded", {"what": "prices"}, scopes=[*WRITE, "other:read"])
    done = await status_until(r1, started["job_id"], finished)
    assert done["status"] == "succeeded"
