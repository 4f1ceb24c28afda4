"""The control plane through a NATS outage: no stale key survives a missed event, no key use is
lost, and the key uses waiting for NATS stay bounded (the oldest dropped, counted)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from mcpmesh.bus import connect
from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.gateway.control import AuthFailed, ControlPlane, audit, key_use
from mcpmesh.store import Store

from .conftest import ADMIN_KEY, PEPPER, SIGNING_PEM, Admin


async def until(condition: Callable[[], bool], wait_s: float = 10.0) -> None:
    deadline = time.monotonic() + wait_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_cache_is_dropped_after_a_reconnect(private_nats: LocalNatsServer, mongo_db: Any) -> None:
    bus = await connect(private_nats.url_for("gateway"), name="resilience")
    plane = ControlPlane(
        Store(mongo_db, {}), bus, admin_key=ADMIN_KEY, stamp_signing_key=SIGNING_PEM, key_pepper=PEPPER
    )
    await plane.start()
    try:
        org = await plane.orgs.create("Acme", "pro", {})
        row, secret = await plane.keys.create(org["org_id"], "k", ["*"], None)
        await plane.authenticate(secret)  # cached
        private_nats.stop()
        await until(lambda: not bus.connected)
        # Another replica revokes the key while this one is cut off: its KeyEvent never arrives here.
        await plane.keys.set_status(row["key_id"], "revoked")
        with pytest.raises(AuthFailed) as info:  # disconnected: the cache is not trusted
            await plane.authenticate(secret)
        assert info.value.reason == "revoked"
        private_nats.restart()
        await until(lambda: bus.connected)
        with pytest.raises(AuthFailed):
            await plane.authenticate(secret)
    finally:
        await plane.stop()
        await bus.close()


async def test_key_uses_survive_a_failed_flush(admin: Admin, monkeypatch: pytest.MonkeyPatch) -> None:
    org = (await admin.org())["id"]
    key = await admin.key(org)
    principal = await admin.plane.authenticate(key["secret"])
    real_publish = audit.publish_nowait
    failing = True

    async def flaky_publish(bus: Any, event: Any) -> None:
        if failing:
            raise ConnectionError("JetStream unavailable")
        await real_publish(bus, event)

    monkeypatch.setattr(audit, "publish_nowait", flaky_publish)
    for i in range(3):
        await admin.plane.note_key_use(principal, action="tools/list", outcome="ok", request_id=f"r{i}")
    with pytest.raises(RuntimeError):
        await admin.plane.key_use.flush()
    failing = False
    await admin.plane.key_use.flush()
    deadline = time.monotonic() + 5
    while True:
        items = (await admin.call("GET", f"/admin/audit?org_id={org}&actor={key['id']}", expect=200))["items"]
        if len(items) == 3 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert sorted(i["request_id"] for i in items) == ["r0", "r1", "r2"]


async def test_key_uses_stay_bounded_while_nats_takes_none(
    admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = (await admin.org())["id"]
    key = await admin.key(org)
    principal = await admin.plane.authenticate(key["secret"])
    recorder = admin.plane.key_use
    monkeypatch.setattr(key_use, "MAX_QUEUED", 10)
    failing = True
    real_publish = audit.publish_nowait

    async def refusing_publish(bus: Any, event: Any) -> None:
        if failing:
            raise ConnectionError("no NATS")
        await real_publish(bus, event)

    monkeypatch.setattr(audit, "publish_nowait", refusing_publish)
    for i in range(25):
        await admin.plane.note_key_use(principal, action="tools/list", outcome="ok", request_id=f"r{i}")
    with pytest.raises(RuntimeError):
        await recorder.flush()
    assert (recorder.queued, recorder.dropped_total) == (10, 15)  # the oldest went, and were counted
    failing = False
    await recorder.flush()
    assert recorder.queued == 0
    deadline = time.monotonic() + 5
    while True:
        items = (await admin.call("GET", f"/admin/audit?org_id={org}&actor={key['id']}", expect=200))["items"]
        if len(items) == 10 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert sorted(int(i["request_id"][1:]) for i in items) == list(range(15, 25))  # the newest ten
