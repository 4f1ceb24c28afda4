"""Durable jobs as MCP tasks (2025-11-25) through the gateway, over raw HTTP (httpx): create with
a task-augmented tools/call, get, result, list, cancel, and every refusal the spec names."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from mcpmesh.service import JobSettings, ServiceSettings

from .conftest import Gateway, Mesh, modern_body, modern_headers
from .crunch_replica import build
from .task_client import RELATED, WAIT_S, Session, list_all, progress, trace_lines, until
from .test_streaming import sse_messages

FAST_JOBS = JobSettings(lease_s=1.2, heartbeat_s=0.1, sweep_s=0.2, retention_h=1.0)
TASKS_CAPABILITY = {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}


@pytest.fixture
async def tasks_mesh(mesh: Mesh, tmp_path: Path) -> AsyncIterator[tuple[Gateway, Path, httpx.AsyncClient]]:
    """`crunch` (and `logs`, built the same way: key scopes must name a real service) with fast job settings behind one gateway."""
    trace = tmp_path / "trace"
    for name in ("crunch", "logs"):
        settings = ServiceSettings(
            mongodb_url=mesh.mongo_url, mongodb_database=f"{mesh.database}_{name}", jobs=FAST_JOBS
        )
        await mesh.service(build(trace, name), settings)
    gw = await mesh.gateway(task_poll_s=0.05)
    await mesh.wait_discovered("crunch", "logs")
    async with httpx.AsyncClient(timeout=WAIT_S) as http:
        yield gw, trace, http


async def new_session(mesh: Mesh, gw: Gateway, http: httpx.AsyncClient) -> Session:
    """A 2025-11-25 session of a new org's key that may use everything."""
    _org, key = await mesh.tenant(scopes=["*"])
    client = Session(http, gw.url, key)
    await client.open()
    return client


async def test_a_job_runs_as_a_task_from_creation_to_result(
    mesh: Mesh, tasks_mesh: tuple[Gateway, Path, httpx.AsyncClient]
) -> None:
    gw, trace, http = tasks_mesh
    _org, key = await mesh.tenant(scopes=["*"])
    client = Session(http, gw.url, key)
    init = await client.open()
    assert init["capabilities"]["tasks"] == TASKS_CAPABILITY

    tools = {t["name"]: t for t in (await client.result("tools/list"))["tools"]}
    assert tools["crunch_long"]["execution"] == {"taskSupport": "optional"}
    assert tools["crunch_resumable"]["execution"] == {"taskSupport": "optional"}
    assert "execution" not in tools["crunch_ping"] and "execution" not in tools["crunch_job_status"]

    task = await client.start("crunch_long", {"steps": 3, "step_s": 0.05})
    service, _, job_id = task["taskId"].partition("_")
    assert service == "crunch" and len(job_id) == 28
    assert task["status"] == "working" and task["pollInterval"] == 50
    assert task["createdAt"] and task["lastUpdatedAt"] and task["ttl"] > 0

    result = await client.result("tasks/result", {"taskId": task["taskId"]})  # blocks until done
    assert result["structuredContent"] == {"steps": 3} and not result.get("isError")
    assert result["_meta"][RELATED] == {"taskId": task["taskId"]}
    assert trace_lines(trace, job_id) == ["step 1", "step 2", "step 3"]

    done = await client.result("tasks/get", {"taskId": task["taskId"]})
    assert done["status"] == "completed" and done["statusMessage"] == "step 3 of 3"
    assert done["createdAt"] == task["createdAt"] and done["ttl"] > 0 and progress(done) == 3
    listed = (await client.result("tasks/list"))["tasks"]
    assert [t for t in listed if t["taskId"] == task["taskId"]] == [
        {k: v for k, v in done.items() if k != "_meta"}
    ]
    refused = await client.error("tasks/cancel", {"taskId": task["taskId"]})
    assert refused["code"] == -32602 and "already in terminal status 'completed'" in refused["message"]

    # The job is a job too: the plain tools answer for it in the same session.
    view = await client.result("tools/call", {"name": "crunch_job_status", "arguments": {"job_id": job_id}})
    assert view["structuredContent"]["status"] == "succeeded"


async def test_tasks_result_streams_the_jobs_progress_when_asked(
    mesh: Mesh, tasks_mesh: tuple[Gateway, Path, httpx.AsyncClient]
) -> None:
    gw, _trace, http = tasks_mesh
    client = await new_session(mesh, gw, http)
    task = await client.start("crunch_long", {"steps": 5, "step_s": 0.3})
    resp = await client.post("tasks/result", {"taskId": task["taskId"], "_meta": {"progressToken": "t-1"}})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    *notes, answer = sse_messages(resp.content)
    assert answer["id"] == client.ids and answer["result"]["structuredContent"] == {"steps": 5}
    assert {n["method"] for n in notes} == {"notifications/progress"}
    values = [n["params"]["progress"] for n in notes]
    assert len(values) >= 2 and values == sorted(set(values)) and values[-1] == 5  # only ever grows
    assert all(n["params"]["progressToken"] == "t-1" and n["params"]["total"] == 5 for n in notes)
    assert notes[-1]["params"]["message"] == "step 5 of 5"
    # Without a progressToken the answer is the result alone, as plain JSON.
    plain = await client.post("tasks/result", {"taskId": task["taskId"]})
    assert plain.headers["content-type"].startswith("application/json")
    assert plain.json()["result"]["structuredContent"] == {"steps": 5}


async def test_a_cancelled_task_stops_its_work(
    mesh: Mesh, tasks_mesh: tuple[Gateway, Path, httpx.AsyncClient]
) -> None:
    gw, trace, http = tasks_mesh
    client = await new_session(mesh, gw, http)
    task = await client.start("crunch_long", {"steps": 10_000, "step_s": 0.02})
    job_id = task["taskId"].partition("_")[2]
    await client.get_until(task["taskId"], lambda t: progress(t) >= 3)

    cancelled = await client.result("tasks/cancel", {"taskId": task["taskId"]})
    assert cancelled["status"] == "cancelled" and cancelled["statusMessage"].startswith("cancelled by ")
    await until(lambda: "cancelled" in trace_lines(trace, job_id))  # the handler saw it
    lines = trace_lines(trace, job_id)
    assert lines[-1] == "cancelled" and lines.count("cancelled") == 1
    stopped = await client.result("tasks/get", {"taskId": task["taskId"]})
    await asyncio.sleep(5 * FAST_JOBS.heartbeat_s)
    assert trace_lines(trace, job_id) == lines  # no step after the cancellation
    later = await client.result("tasks/get", {"taskId": task["taskId"]})
    assert later["status"] == "cancelled" and progress(later) == progress(stopped) < 10_000

    result = await client.result("tasks/result", {"taskId": task["taskId"]})
    assert result["isError"] is True and result["structuredContent"]["code"] == "conflict"
    assert result["_meta"][RELATED] == {"taskId": task["taskId"]}
    again = await client.error("tasks/cancel", {"taskId": task["taskId"]})
    assert again["code"] == -32602 and "'cancelled'" in again["message"]


async def test_a_failed_job_is_a_failed_task_with_the_tools_error(
    mesh: Mesh, tasks_mesh: tuple[Gateway, Path, httpx.AsyncClient]
) -> None:
    gw, _trace, http = tasks_mesh
    client = await new_session(mesh, gw, http)
    task = await client.start("crunch_refused", {})
    result = await client.result("tasks/result", {"taskId": task["taskId"]})
    assert result["isError"] is True
    assert result["structuredContent"]["code"] == "limit_exceeded"
    assert "the free tier allows 3 crunches a day" in result["structuredContent"]["message"]
    failed = await client.result("tasks/get", {"taskId": task["taskId"]})
    assert failed["status"] == "failed" and failed["statusMessage"] == "the free tier allows 3 crunches a day"
    assert failed["_meta"]["mcpmesh/job"]["error"]["code"] == "limit_exceeded"

    # A start the service refuses creates no task: a JSON-RPC error says why.
    bad = await client.error(
        "tools/call", {"name": "crunch_long", "arguments": {"steps": "many"}, "task": {}}
    )
    assert bad["data"]["code"] == "invalid_request" and "steps" in bad["message"]


async def test_unknown_foreign_and_unsupported_tasks_are_refused(
    mesh: Mesh, tasks_mesh: tuple[Gateway, Path, httpx.AsyncClient]
) -> None:
    gw, _trace, http = tasks_mesh
    _org, key = await mesh.tenant(scopes=["*"])
    _other, other_key = await mesh.tenant(scopes=["*"], name="Globex")
    client, other = Session(http, gw.url, key), Session(http, gw.url, other_key)
    await client.open()
    await other.open()
    task = await client.start("crunch_long", {"steps": 1, "step_s": 0.01})

    for task_id in ("crunch_" + "0" * 28, "nosuch_" + "0" * 28, "crunch_nothex", "", 42):
        for method in ("tasks/get", "tasks/result", "tasks/cancel"):
            error = await client.error(method, {"taskId": task_id})
            assert error["code"] == -32602, (task_id, method, error)
    error = await client.error("tasks/get", {"taskId": "crunch_" + "0" * 28})
    assert error["message"].startswith("task not found: no task 'crunch_000")

    # Another org's task is simply not found, and not listed.
    for method in ("tasks/get", "tasks/result", "tasks/cancel"):
        error = await other.error(method, {"taskId": task["taskId"]})
        assert error["code"] == -32602 and error["message"].startswith("task not found"), error
    assert all(t["taskId"] != task["taskId"] for t in (await other.result("tasks/list"))["tasks"])

    # A tool that is not a job cannot run as a task.
    error = await client.error("tools/call", {"name": "crunch_ping", "arguments": {}, "task": {"ttl": 1000}})
    assert error["code"] == -32601 and "execution.taskSupport is forbidden" in error["message"]
    error = await client.error("tasks/list", {"cursor": "not a cursor"})
    assert error["code"] == -32602 and "invalid cursor" in error["message"]


async def test_tasks_list_merges_services_newest_first_in_pages(
    mesh: Mesh, tasks_mesh: tuple[Gateway, Path, httpx.AsyncClient]
) -> None:
    gw, _trace, http = tasks_mesh
    gw.state.router.tasks.page = 2
    org, key = await mesh.tenant(scopes=["*"])
    client = Session(http, gw.url, key)
    await client.open()
    started = []
    for tool in ("crunch_long", "logs_long", "logs_long", "crunch_long", "logs_long"):
        started.append((await client.start(tool, {"steps": 1, "step_s": 0.01}))["taskId"])

    assert await list_all(client, page=2) == started[::-1]  # each once, newest first, across both

    # A key that may read only one of the services lists only its tasks.
    logs_only = await mesh.admin(
        "POST", f"/admin/orgs/{org}/keys", {"name": "logs only", "scopes": ["logs:read"]}, expect=201
    )
    narrow = Session(http, gw.url, logs_only["secret"])
    await narrow.open()
    assert await list_all(narrow, page=2) == [t for t in started[::-1] if t.startswith("logs_")]


async def test_only_2025_11_25_sessions_get_tasks(
    mesh: Mesh, tasks_mesh: tuple[Gateway, Path, httpx.AsyncClient]
) -> None:
    gw, _trace, http = tasks_mesh
    _org, key = await mesh.tenant(scopes=["*"])

    older = Session(http, gw.url, key)
    init = await older.open("2025-06-18")
    assert init["protocolVersion"] == "2025-06-18" and "tasks" not in init["capabilities"]
    tools = (await older.result("tools/list"))["tools"]
    assert all("execution" not in t for t in tools)
    # `task` is ignored where tasks are not offered: the call is a plain call (the job's view).
    plain = await older.result(
        "tools/call", {"name": "crunch_long", "arguments": {"steps": 1, "step_s": 0.01}, "task": {}}
    )
    assert plain["structuredContent"]["status"] in ("queued", "running")
    assert (await older.error("tasks/get", {"taskId": "crunch_" + "0" * 28}))["code"] == -32601

    # 2026-07-28: no tasks in the core; the job tools are plain tools.
    resp = await gw.rpc("server/discover", key=key)
    assert "tasks" not in resp[1]["result"]["capabilities"]
    status, body, _ = await gw.rpc("tools/list", key=key)
    assert status == 200 and all("execution" not in t for t in body["result"]["tools"])
    params = {"name": "crunch_long", "arguments": {"steps": 1, "step_s": 0.01}, "task": {}}
    status, body, _ = await gw.rpc("tools/call", params, key=key)
    assert status == 200 and body["result"]["structuredContent"]["status"] in ("queued", "running")
    status, body, _ = await gw.post(
        modern_body("tasks/get", {"taskId": "x"}), key=key, headers=modern_headers("tasks/get")
    )
    assert body["error"]["code"] == -32601


async def test_tasks_result_waits_at_most_the_call_cap_and_the_job_keeps_running(
    mesh: Mesh, tasks_mesh: tuple[Gateway, Path, httpx.AsyncClient]
) -> None:
    _gw, _trace, http = tasks_mesh
    capped = await mesh.gateway(max_call_s=0.5, task_poll_s=0.05)
    await mesh.wait_discovered("crunch")
    client = await new_session(mesh, capped, http)
    task = await client.start("crunch_long", {"steps": 10_000, "step_s": 0.02})
    error = await client.error("tasks/result", {"taskId": task["taskId"]})
    assert error["data"]["code"] == "timeout" and error["data"]["retryable"] is True
    assert "call tasks/result again" in error["message"]
    assert (await client.result("tasks/get", {"taskId": task["taskId"]}))["status"] == "working"
    assert (await client.result("tasks/cancel", {"taskId": task["taskId"]}))["status"] == "cancelled"


async def test_one_service_alone_offers_its_own_tasks(
    mesh: Mesh, tasks_mesh: tuple[Gateway, Path, httpx.AsyncClient]
) -> None:
    gw, _trace, http = tasks_mesh
    _org, key = await mesh.tenant(scopes=["*"])
    everything = Session(http, gw.url, key)
    await everything.open()
    logs_task = await everything.start("logs_long", {"steps": 1, "step_s": 0.01})

    alone = Session(http, gw.base("/mcp/crunch"), key)
    init = await alone.open()
    assert init["capabilities"]["tasks"] == TASKS_CAPABILITY
    tools = {t["name"]: t for t in (await alone.result("tools/list"))["tools"]}
    assert tools["long"]["execution"] == {"taskSupport": "optional"} and "execution" not in tools["ping"]
    task = await alone.start("long", {"steps": 1, "step_s": 0.01})
    assert task["taskId"].startswith("crunch_")
    assert (await alone.result("tasks/result", {"taskId": task["taskId"]}))["structuredContent"] == {
        "steps": 1
    }
    assert [t["taskId"] for t in (await alone.result("tasks/list"))["tasks"]] == [task["taskId"]]
    error = await alone.error("tasks/get", {"taskId": logs_task["taskId"]})  # another service's
    assert error["code"] == -32602 and error["message"].startswith("task not found")
