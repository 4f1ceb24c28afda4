"""Org delete and export fan out to every discovered service; failures are reported, not hidden."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from mcp.server.mcpserver import Context
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import ServiceConfig

from mcpmesh.bus import connect
from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.gateway.control import AuthFailed
from mcpmesh.proto.errors import ErrorCode, MeshError
from mcpmesh.proto.events import TenantCommand, TenantDataReply
from mcpmesh.proto.subjects import TENANT_ACTIONS, tenant_control_subject
from mcpmesh.service import MeshService, call_of
from mcpmesh.service.settings import ServiceSettings
from mcpmesh.service.testing import ServiceHarness
from mcpmesh.store import Index

from .conftest import SIGNING_PEM, Admin


def notes_service() -> MeshService:
    svc = MeshService("notes", store_kinds={"notes": [Index(keys=[("title", 1)])]})

    @svc.tool(access="write")
    async def add(title: str, ctx: Context) -> str:
        """Store a note for the calling org."""
        notes = await call_of(ctx).store.collection("notes")
        await notes.insert_one({"title": title})
        return "ok"

    return svc


@pytest.fixture
async def notes(nats_server: LocalNatsServer, mongo_url: str, mongo_db: Any) -> AsyncIterator[ServiceHarness]:
    settings = ServiceSettings(mongodb_url=mongo_url, mongodb_database=mongo_db.name)
    harness = ServiceHarness(notes_service(), nats_server, settings=settings, signing_key_pem=SIGNING_PEM)
    async with harness:
        yield harness


async def test_services_are_discovered(admin: Admin, notes: ServiceHarness) -> None:
    assert "notes" in await admin.plane.services()


async def test_export_then_delete_drops_everything(admin: Admin, notes: ServiceHarness) -> None:
    org = (await admin.org())["id"]
    other = (await admin.org("Other"))["id"]
    key = await admin.key(org)
    for who, title in ((org, "mine"), (org, "also mine"), (other, "theirs")):
        await notes.call_tool(who, "add", {"title": title})

    export = await admin.call("GET", f"/admin/orgs/{org}/export", expect=200)
    assert export["complete"] is True and export["org"]["id"] == org
    titles = sorted(d["title"] for d in export["services"]["notes"]["data"]["notes"])
    assert titles == ["also mine", "mine"]
    assert export["keys"][0]["id"] == key["id"]
    assert key["secret"] not in str(export) and "hash" not in str(export["keys"])
    assert "theirs" not in str(export) and other not in str(export)

    deleted = await admin.call("DELETE", f"/admin/orgs/{org}", expect=200)
    assert deleted["deleted"] is True
    assert deleted["services"]["notes"] == {"ok": True, "dropped": ["notes"]}
    assert deleted["control_rows"]["api_keys"] == 1 and deleted["control_rows"]["tenants"] == 1
    assert await notes.service.store.tenant_collections(org) == {}
    assert list(await notes.service.store.tenant_collections(other)) == ["notes"]  # untouched
    await admin.call("GET", f"/admin/orgs/{org}", expect=404)
    with pytest.raises(AuthFailed) as info:
        await admin.plane.authenticate(key["secret"])
    assert info.value.reason == "unknown"
    assert (await admin.call("GET", f"/admin/orgs/{other}", expect=200))["status"] == "active"


@pytest.fixture
async def broken(nats_server: LocalNatsServer) -> AsyncIterator[dict[str, bool]]:
    """A service whose tenant delete fails until `state["fixed"]` is set."""
    bus = await connect(nats_server.url_for("svc-broken"), name="broken-service")
    state = {"fixed": False}

    async def handle(req: Request) -> None:
        org_id = msgspec.json.decode(req.data, type=TenantCommand).org_id
        if state["fixed"]:
            reply = TenantDataReply(service="broken", org_id=org_id, dropped=["things"], export={})
        else:
            error = MeshError(ErrorCode.UNAVAILABLE, "disk on fire")
            reply = TenantDataReply(service="broken", org_id=org_id, error=error)
        await req.respond(msgspec.json.encode(reply))

    micro = await add_service(bus.nc, ServiceConfig(name="broken", version="0.0.1"))
    for action in TENANT_ACTIONS:
        subject = tenant_control_subject(action, "broken")
        await micro.add_endpoint(
            name=f"tenant-{action}", subject=subject, queue_group="broken", handler=handle
        )
    yield state
    await micro.stop()
    await bus.close()


async def test_a_failing_service_leaves_the_org_deleting_and_a_retry_finishes(
    admin: Admin, notes: ServiceHarness, broken: dict[str, bool]
) -> None:
    org = (await admin.org())["id"]
    key = await admin.key(org)
    await notes.call_tool(org, "add", {"title": "x"})
    failed = await admin.call("DELETE", f"/admin/orgs/{org}", expect=502)
    error = failed["error"]
    assert "broken" in error["message"] and "DELETE again" in error["message"]
    assert error["services"]["broken"]["ok"] is False
    assert error["services"]["broken"]["error"]["message"] == "disk on fire"
    assert error["services"]["notes"]["ok"] is True
    shown = await admin.call("GET", f"/admin/orgs/{org}", expect=200)
    assert shown["status"] == "deleting"
    with pytest.raises(AuthFailed):
        await admin.plane.authenticate(key["secret"])
    await admin.call("POST", f"/admin/orgs/{org}/resume", expect=409)
    export = await admin.call("GET", f"/admin/orgs/{org}/export", expect=502)
    assert export["complete"] is False and "broken" in export["error"]["message"]

    broken["fixed"] = True
    done = await admin.call("DELETE", f"/admin/orgs/{org}", expect=200)
    assert done["services"]["broken"] == {"ok": True, "dropped": ["things"]}
    await admin.call("GET", f"/admin/orgs/{org}", expect=404)
    await asyncio.sleep(0)
