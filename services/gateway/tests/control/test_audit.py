"""Audit: admin actions and key uses land in the append-only log, queryable and paginated."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from mcpmesh.gateway.control import audit
from mcpmesh.proto.subjects import audit_subject

from .conftest import Admin, ServiceBuses


async def audit_rows(admin: Admin, query: str, count: int, wait_s: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + wait_s
    while True:
        result = await admin.call("GET", f"/admin/audit?{query}", expect=200)
        if len(result["items"]) >= count or time.monotonic() > deadline:
            assert len(result["items"]) == count, result["items"]
            items: list[dict[str, Any]] = result["items"]
            return items


async def test_admin_actions_and_key_uses_are_audited(admin: Admin) -> None:
    org = (await admin.org())["id"]
    other = (await admin.org("Other"))["id"]
    key = await admin.key(org)
    await admin.call("POST", f"/admin/keys/{key['id']}/suspend", expect=200)
    await admin.call("POST", f"/admin/keys/{key['id']}/resume", expect=200)
    principal = await admin.plane.authenticate(key["secret"])
    await admin.plane.note_key_use(
        principal, action="tools/call context.create", outcome="ok", request_id="r-1"
    )
    await admin.plane.note_key_use(
        principal, action="tools/call llm.complete", outcome="rate_limited", request_id="r-2"
    )
    rows = await audit_rows(admin, f"org_id={org}", 6)
    actions = [r["action"] for r in reversed(rows)]  # oldest first (same-millisecond events: any order)
    assert actions[:4] == ["org.create", "key.create", "key.suspend", "key.resume"]
    assert sorted(actions[4:]) == ["tools/call context.create", "tools/call llm.complete"]
    assert all(r["org_id"] == org for r in rows)
    by_admin = await audit_rows(admin, f"org_id={org}&actor=admin", 4)
    assert {r["target"] for r in by_admin} == {org, key["id"]}
    uses = await audit_rows(admin, f"org_id={org}&actor={key['id']}", 2)
    assert {(r["outcome"], r["request_id"]) for r in uses} == {("ok", "r-1"), ("rate_limited", "r-2")}
    revokes = await audit_rows(admin, f"org_id={org}&action=key.suspend", 1)
    assert revokes[0]["target"] == key["id"]
    assert key["secret"] not in str(rows)
    assert (await audit_rows(admin, f"org_id={other}", 1))[0]["action"] == "org.create"
    assert not await audit_rows(admin, f"org_id={org}&since=2999-01-01T00:00:00Z", 0)


async def test_pagination_with_cursor(admin: Admin) -> None:
    org = (await admin.org())["id"]
    for i in range(6):
        await admin.call("PATCH", f"/admin/orgs/{org}", {"name": f"Name {i}"}, expect=200)
    await audit_rows(admin, f"org_id={org}", 7)
    seen: list[str] = []
    cursor = ""
    while True:
        page = await admin.call("GET", f"/admin/audit?org_id={org}&limit=3{cursor}", expect=200)
        seen += [r["id"] for r in page["items"]]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert len(seen) == len(set(seen)) == 7
    await admin.call("GET", f"/admin/audit?org_id={org}&cursor=%%%", expect=400)
    await admin.call("GET", "/admin/audit?limit=5000", expect=400)


async def test_append_only(admin: Admin) -> None:
    org = (await admin.org())["id"]
    (row,) = await audit_rows(admin, f"org_id={org}", 1)
    event = audit.new_event(org, actor="admin", action="org.create", outcome="forged")
    forged = type(event)(**{**{f: getattr(event, f) for f in event.__struct_fields__}, "event_id": row["id"]})
    await admin.plane.audit.write([forged])  # a redelivery, or a second write of the same id: no effect
    await audit.publish(admin.plane.bus, forged)
    await asyncio.sleep(0.3)
    (again,) = await audit_rows(admin, f"org_id={org}", 1)
    assert again == row
    for method in ("DELETE", "PUT", "PATCH", "POST"):
        resp = await admin.client.request(method, "/admin/audit", headers=admin.headers)
        assert resp.status == 404


async def test_an_event_is_stored_only_under_the_source_its_subject_names(
    admin: Admin, services: ServiceBuses
) -> None:
    """Only svc-<service> may publish on `audit.*.<service>` (and only the gateway on
    `audit.*.gateway`), so the writer keeps an event only if its `source` is its subject's."""
    org = (await admin.org())["id"]
    context = await services.bus("context")
    own = audit.new_event(org, actor="key-x", action="context.share", outcome="ok", source="context")
    claims_gateway = audit.new_event(org, actor="admin", action="org.delete", outcome="ok")
    for event in (own, claims_gateway):  # both published by svc-context on its own subject
        await context.js.publish(audit_subject(org, "context"), msgspec.json.encode(event))
    rows = await audit_rows(admin, f"org_id={org}", 2)  # org.create + the service's own event
    assert {r["action"] for r in rows} == {"org.create", "context.share"}
    stored = await (await admin.plane.store.control("audit")).find_one({"_id": own.event_id})
    assert stored is not None and stored["source"] == "context"
    await asyncio.sleep(0.3)
    assert await (await admin.plane.store.control("audit")).find_one({"_id": claims_gateway.event_id}) is None
