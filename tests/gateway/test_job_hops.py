"""A durable job calls other services as its org for its whole budget, through the real gateway:
its service trades the starting call's stamp for a job ticket, and the ticket for fresh stamps
(`tenancy.tickets`), long after the stamp that started it expired; never once its key is revoked."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from mcp.server.mcpserver import Context

from mcpmesh.proto.errors import ErrorCode
from mcpmesh.proto.jobs import StampRequest
from mcpmesh.proto.subjects import stamp_request_subject
from mcpmesh.service import JobContext, MeshService, ServiceSettings, call_of
from mcpmesh.tenancy import stamp as stamps
from mcpmesh.tenancy.apikeys import parse_api_key
from mcpmesh.tenancy.stamp import StampSigner, StampVerifier, public_key_pem
from tests.gateway.conftest import Gateway, Mesh

#: The gateway's stamps live a second here: the job outlives the one that started it.
STAMP_TTL_S = 1
#: How long a service still accepts a stamp past its expiry (`StampVerifier.leeway_s`).
LEEWAY_S = 5


@dataclass
class Steps:
    """The test's hold on the running job: it waits for `go` between its two calls."""

    first: dict[str, Any] = field(default_factory=dict)
    first_done: asyncio.Event = field(default_factory=asyncio.Event)
    go: asyncio.Event = field(default_factory=asyncio.Event)


def asker(steps: Steps) -> MeshService:
    svc = MeshService("hopa")

    @svc.job_tool(access="read", budget_s=120)
    async def ask_twice(job: JobContext) -> dict[str, Any]:
        """Ask hopb who is calling, wait for the test, ask again."""
        first = await job.call_tool("hopb", "whoami", {})
        steps.first = first["structuredContent"]
        steps.first_done.set()
        await steps.go.wait()
        second = await job.call_tool("hopb", "whoami", {})
        return {"first": steps.first, "second": second["structuredContent"]}

    return svc


def answerer() -> MeshService:
    svc = MeshService("hopb")

    @svc.tool(access="read")
    async def whoami(ctx: Context) -> dict[str, Any]:
        call = call_of(ctx)
        stamp = call.stamp
        tags = sorted(call.key_tags)
        return {"org": stamp.org_id, "key": stamp.sub, "tags": tags, "exp": stamp.exp, "jti": stamp.jti}

    return svc


@pytest.fixture
async def job_mesh(mesh: Mesh) -> AsyncIterator[tuple[Mesh, Gateway, Steps]]:
    steps = Steps()
    settings = ServiceSettings(mongodb_url=mesh.mongo_url, mongodb_database=mesh.database + "_hopa")
    await mesh.service(asker(steps), settings)
    await mesh.service(answerer())
    gw = await mesh.gateway(stamp_ttl_s=STAMP_TTL_S)
    await mesh.wait_discovered("hopa", "hopb")
    yield mesh, gw, steps
    steps.go.set()


@pytest.fixture(autouse=True)
def _downstream_before_nats(monkeypatch: pytest.MonkeyPatch) -> None:
    """hopa may call hopb: set before the test's nats-server renders its users (`mesh`)."""
    monkeypatch.setitem(stamps.DOWNSTREAM, "hopa", ("hopb",))


async def tool(gw: Gateway, key: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    status, body, _ = await gw.rpc("tools/call", {"name": name, "arguments": arguments}, key=key)
    assert status == 200, body
    result: dict[str, Any] = body["result"]
    return result


async def finished(gw: Gateway, key: str, job_id: str) -> dict[str, Any]:
    for _ in range(400):
        view = (await tool(gw, key, "hopa_job_status", {"job_id": job_id}))["structuredContent"]
        if view["status"] not in ("queued", "running"):
            return view
        await asyncio.sleep(0.05)
    raise AssertionError("the job did not finish")


async def test_a_job_calls_another_service_as_its_org_long_after_its_start_stamp_expired(
    job_mesh: tuple[Mesh, Gateway, Steps],
) -> None:
    mesh, gw, steps = job_mesh
    org, key = await mesh.tenant(scopes=["*"], tags=["support", "eu"])
    started = (await tool(gw, key, "hopa_ask_twice", {}))["structuredContent"]
    assert "ticket" not in started
    await asyncio.wait_for(steps.first_done.wait(), 30)
    # Past every stamp minted so far, and past the leeway a service gives one.
    await asyncio.sleep(max(0.0, steps.first["exp"] + LEEWAY_S + 1 - time.time()))
    steps.go.set()
    view = await finished(gw, key, started["job_id"])
    assert view["status"] == "succeeded", view
    assert "ticket" not in view
    result = (await tool(gw, key, "hopa_job_result", {"job_id": started["job_id"]}))["structuredContent"]
    first, second = result["first"], result["second"]
    assert first["org"] == second["org"] == org
    assert first["key"] == second["key"] == started["started_by"]
    assert first["tags"] == second["tags"] == ["eu", "support"]  # a renewed stamp keeps the key's tags
    assert second["jti"] != first["jti"] and second["exp"] > first["exp"] + LEEWAY_S
    # The ticket went with the job's end.
    store = mesh.harnesses["hopa"].service.store.for_tenant(org)
    record = await (await store.collection("hopa_jobs")).find_one({"_id": started["job_id"]})
    assert record is not None and record["ticket"] is None


async def test_once_its_key_is_revoked_a_job_can_no_longer_call_other_services(
    job_mesh: tuple[Mesh, Gateway, Steps],
) -> None:
    mesh, gw, steps = job_mesh
    org, key = await mesh.tenant(scopes=["*"])
    started = (await tool(gw, key, "hopa_ask_twice", {}))["structuredContent"]
    await asyncio.wait_for(steps.first_done.wait(), 30)
    # The running job's record holds its ticket, which an export of the org's data leaves out.
    store = mesh.harnesses["hopa"].service.store.for_tenant(org)
    record = await (await store.collection("hopa_jobs")).find_one({"_id": started["job_id"]})
    assert record is not None and isinstance(record["ticket"], str)
    exported = await mesh.harnesses["hopa"].tenant_command("export", org)
    assert exported.error is None
    assert [job["_id"] for job in exported.export["hopa_jobs"]] == [started["job_id"]]
    assert all("ticket" not in job for job in exported.export["hopa_jobs"])
    await mesh.admin("POST", f"/admin/keys/{started['started_by']}/revoke", expect=200)
    steps.go.set()
    other = await mesh.admin("POST", f"/admin/orgs/{org}/keys", {"name": "k2", "scopes": ["*"]}, expect=201)
    view = await finished(gw, other["secret"], started["job_id"])
    assert view["status"] == "failed"
    assert view["error"]["code"] == "unauthenticated"
    assert view["error"]["message"].startswith("the key that started the job can no longer be used: ")
    assert "revoked" in view["error"]["message"]


async def test_the_gateway_gives_tickets_for_a_services_own_calls_and_stamps_for_its_own_tickets(
    job_mesh: tuple[Mesh, Gateway, Steps],
) -> None:
    mesh, gw, _steps = job_mesh
    org, secret = await mesh.tenant(scopes=["*"])
    key_id = parse_api_key(secret)
    desk = gw.state.control.job_stamps  # type: ignore[attr-defined]
    signer = StampSigner(mesh.signing_pem)
    job_id = "0" * 12 + "b" * 16

    def asked(**fields: Any) -> bytes:
        return msgspec.json.encode(StampRequest(job_id=job_id, budget_s=60, **fields))

    own = signer.mint(org_id=org, tier="pro", scopes=["*"], sub=key_id, service="hopa")  # aud: hopa, hopb
    # hopb was handed hopa's stamp by a call: it is not hopb's own call, so no ticket.
    refused = await desk.answer(stamp_request_subject("hopb"), asked(stamp=own))
    assert refused.error.code is ErrorCode.FORBIDDEN and refused.ticket is None
    unknown = signer.mint(org_id=org, tier="pro", scopes=["*"], sub="key-nobody", service="hopa")
    refused = await desk.answer(stamp_request_subject("hopa"), asked(stamp=unknown))
    assert refused.error.code is ErrorCode.UNAUTHENTICATED
    ticket = (await desk.answer(stamp_request_subject("hopa"), asked(stamp=own))).ticket
    assert ticket is not None
    # Only hopa trades hopa's ticket; what it gets is a stamp as the gateway mints for a call to hopa.
    refused = await desk.answer(
        stamp_request_subject("hopb"), msgspec.json.encode(StampRequest(ticket=ticket))
    )
    assert refused.error.code is ErrorCode.FORBIDDEN
    renewed = await desk.answer(
        stamp_request_subject("hopa"), msgspec.json.encode(StampRequest(ticket=ticket))
    )
    assert renewed.stamp is not None and renewed.error is None
    stamp = StampVerifier(public_key_pem(mesh.signing_pem)).verify(renewed.stamp, audience="hopb")
    assert (stamp.org_id, stamp.sub, stamp.aud) == (org, key_id, ["hopa", "hopb"])
    malformed = await desk.answer(stamp_request_subject("hopa"), b"{}")
    assert malformed.error.code is ErrorCode.INVALID_REQUEST
