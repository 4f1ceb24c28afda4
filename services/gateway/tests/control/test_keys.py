"""Key lifecycle: create, authenticate, suspend/revoke seen by a second replica, rotate with grace, expiry."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mcpmesh.gateway.control import AuthFailed, ControlPlane

from .conftest import Admin, PlaneFactory
from .test_audit import audit_rows


async def refused_within(plane: ControlPlane, secret: str, reason: str, seconds: float = 1.0) -> float:
    """How long until `plane` refuses `secret` with `reason` (fails after `seconds`)."""
    start = time.monotonic()
    while True:
        try:
            await plane.authenticate(secret)
        except AuthFailed as exc:
            assert exc.reason == reason, exc.reason
            return time.monotonic() - start
        assert time.monotonic() - start < seconds, f"still accepted after {seconds}s"
        await asyncio.sleep(0.02)


async def test_created_key_authenticates(admin: Admin) -> None:
    org = await admin.org("Acme", tier="pro")
    key = await admin.key(org["id"], ["context:read", "llm:*"])
    principal = await admin.plane.authenticate(key["secret"])
    assert principal.org_id == org["id"]
    assert principal.key_id == key["id"]
    assert principal.tier == "pro"
    assert principal.scopes == ("context:read", "llm:*")
    assert principal.settings.rate_limits.requests_per_minute == 600
    assert principal.tags == () and key["tags"] == []


async def test_a_keys_tags_are_kept_listed_and_in_its_principal(admin: Admin) -> None:
    org = await admin.org()
    key = await admin.key(org["id"], tags=["support", "team:billing", "support"])
    assert key["tags"] == ["support", "team:billing"]  # sorted, each once
    listed = (await admin.call("GET", f"/admin/orgs/{org['id']}/keys"))["items"]
    assert [k["tags"] for k in listed] == [["support", "team:billing"]]
    assert (await admin.plane.authenticate(key["secret"])).tags == ("support", "team:billing")
    events = await audit_rows(admin, f"org_id={org['id']}&action=key.create", 1)
    assert events[0]["detail"] == {"scopes": "*", "tags": "support,team:billing"}
    exported = await admin.call("GET", f"/admin/orgs/{org['id']}/export")
    assert exported["keys"][0]["tags"] == ["support", "team:billing"]


async def test_a_key_row_written_before_tags_existed_has_none(admin: Admin) -> None:
    org = await admin.org()
    key = await admin.key(org["id"])
    rows = await admin.plane.keys.store.control("api_keys")
    await rows.update_one({"key_id": key["id"]}, {"$unset": {"tags": ""}})
    listed = (await admin.call("GET", f"/admin/orgs/{org['id']}/keys"))["items"]
    assert listed[0]["tags"] == []
    assert (await admin.plane.authenticate(key["secret"])).tags == ()


@pytest.mark.parametrize("action,reason", [("suspend", "suspended"), ("revoke", "revoked")])
async def test_suspend_and_revoke_reach_a_second_replica(
    admin: Admin, make_plane: PlaneFactory, action: str, reason: str
) -> None:
    other = await make_plane()  # a second gateway replica, with its own cache
    org = await admin.org()
    key = await admin.key(org["id"])
    await other.authenticate(key["secret"])  # now cached on the other replica
    await admin.plane.authenticate(key["secret"])
    await admin.call("POST", f"/admin/keys/{key['id']}/{action}", expect=200)
    await refused_within(other, key["secret"], reason)
    await refused_within(admin.plane, key["secret"], reason, seconds=0.01)


async def test_org_suspend_reaches_a_second_replica_and_resume_restores(
    admin: Admin, make_plane: PlaneFactory
) -> None:
    other = await make_plane()
    org = await admin.org()
    key = await admin.key(org["id"])
    await other.authenticate(key["secret"])
    await admin.call("POST", f"/admin/orgs/{org['id']}/suspend", expect=200)
    await refused_within(other, key["secret"], "org_suspended")
    await admin.call("POST", f"/admin/orgs/{org['id']}/resume", expect=200)
    assert (await other.authenticate(key["secret"])).org_id == org["id"]


async def test_rotation_keeps_old_secret_for_the_grace_period(admin: Admin, make_plane: PlaneFactory) -> None:
    other = await make_plane()
    org = await admin.org()
    key = await admin.key(org["id"])
    await other.authenticate(key["secret"])
    rotated = await admin.call("POST", f"/admin/keys/{key['id']}/rotate", {"grace_s": 1.0}, expect=200)
    assert rotated["id"] == key["id"] and rotated["secret"] != key["secret"]
    assert rotated["previous_secret_valid_until"] is not None
    for plane in (admin.plane, other):
        assert (await plane.authenticate(rotated["secret"])).key_id == key["id"]
        assert (await plane.authenticate(key["secret"])).key_id == key["id"]
    await asyncio.sleep(1.05)
    for plane in (admin.plane, other):
        await refused_within(plane, key["secret"], "unknown", seconds=0.01)
        assert (await plane.authenticate(rotated["secret"])).key_id == key["id"]


async def test_rotation_without_grace_refuses_old_secret_at_once(
    admin: Admin, make_plane: PlaneFactory
) -> None:
    other = await make_plane()
    org = await admin.org()
    key = await admin.key(org["id"])
    await other.authenticate(key["secret"])
    await admin.call("POST", f"/admin/keys/{key['id']}/rotate", {"grace_s": 0}, expect=200)
    await refused_within(other, key["secret"], "unknown")


async def test_expired_key_is_refused_even_when_cached(admin: Admin) -> None:
    org = await admin.org()
    soon = datetime.now(UTC) + timedelta(seconds=1)
    key = await admin.key(org["id"], expires_at=soon.isoformat())
    await admin.plane.authenticate(key["secret"])  # cached, but not past its expiry
    await asyncio.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.05)
    await refused_within(admin.plane, key["secret"], "expired", seconds=0.01)
    listed = await admin.call("GET", f"/admin/orgs/{org['id']}/keys", expect=200)
    assert listed["items"][0]["status"] == "expired"


async def test_bad_keys_are_refused_without_echo(admin: Admin) -> None:
    org = await admin.org()
    key = await admin.key(org["id"])
    forged = key["secret"][:-4] + ("AAAA" if not key["secret"].endswith("AAAA") else "BBBB")
    cases = {"": "missing", "nope": "malformed", forged: "unknown"}
    for raw, reason in cases.items():
        with pytest.raises(AuthFailed) as info:
            await admin.plane.authenticate(raw)
        assert info.value.reason == reason
        assert not raw or raw not in info.value.message
        assert org["id"] not in info.value.message


async def test_list_never_shows_secrets_and_records_last_use(admin: Admin) -> None:
    org = await admin.org()
    key = await admin.key(org["id"])
    principal = await admin.plane.authenticate(key["secret"])
    await admin.plane.note_key_use(
        principal, action="tools/call context.create", outcome="ok", request_id="r1"
    )
    await admin.plane.key_use.flush()
    listed = await admin.call("GET", f"/admin/orgs/{org['id']}/keys", expect=200)
    text = str(listed)
    assert key["secret"] not in text and "hash" not in text and "secret" not in text
    (item,) = listed["items"]
    assert item["last_used_at"] is not None and item["status"] == "active"


async def test_concurrent_first_uses_share_one_lookup(admin: Admin, monkeypatch: pytest.MonkeyPatch) -> None:
    org = await admin.org()
    key = await admin.key(org["id"])
    keys = admin.plane.keys
    real_get = keys.get
    lookups = 0

    async def counting_get(key_id: str, *, with_hashes: bool = False) -> Any:
        nonlocal lookups
        lookups += 1
        return await real_get(key_id, with_hashes=with_hashes)

    monkeypatch.setattr(keys, "get", counting_get)
    principals = await asyncio.gather(*(admin.plane.authenticate(key["secret"]) for _ in range(50)))
    assert {p.key_id for p in principals} == {key["id"]}
    assert lookups == 1
    await admin.plane.authenticate(key["secret"])
    assert lookups == 1  # cached


async def test_a_lookup_racing_a_revocation_is_not_cached(
    admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = await admin.org()
    key = await admin.key(org["id"])
    keys = admin.plane.keys
    real_get = keys.get
    read, release = asyncio.Event(), asyncio.Event()

    async def slow_get(key_id: str, *, with_hashes: bool = False) -> Any:
        row = await real_get(key_id, with_hashes=with_hashes)
        read.set()
        await release.wait()
        return row

    monkeypatch.setattr(keys, "get", slow_get)
    racing = asyncio.ensure_future(admin.plane.authenticate(key["secret"]))
    await read.wait()  # the key was read while still active ...
    monkeypatch.setattr(keys, "get", real_get)
    await admin.call("POST", f"/admin/keys/{key['id']}/revoke", expect=200)  # ... then revoked
    release.set()
    assert (await racing).key_id == key["id"]  # that request was already in flight
    await refused_within(admin.plane, key["secret"], "revoked", seconds=0.01)
