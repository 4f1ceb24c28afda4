"""The broker itself enforces who may say and hear what, on the nats-server the fixtures and
`./mesh up` run (config rendered by `natsauth`): the open-broker attacks all fail with
nats-server's own "Permissions Violation"."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError

from mcpmesh.bus import connect, flush
from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.proto.ids import SERVICES
from mcpmesh.proto.subjects import inbox_prefix
from mcpmesh.tenancy.natsauth import BusUsers, mesh_users

CONFIG = Path(__file__).parents[3] / "compose" / "nats" / "nats-server.conf"
EXAMPLE_ORGS = ["org-acme", "org-globex"]


def test_shipped_config_is_the_generated_one() -> None:
    users = BusUsers.references(mesh_users(SERVICES, EXAMPLE_ORGS))
    shipped = users.render(store_dir="/data/jetstream", http_port=8222)
    assert CONFIG.read_text() == shipped
    assert k8s_copy().read_text() == shipped


def k8s_copy() -> Path:
    return CONFIG.parents[2] / "k8s" / "base" / "nats" / "nats-server.conf"


@dataclass
class Conn:
    """A raw nats-py connection as one user, recording the errors the server sends it."""

    nc: Client
    errors: list[str] = field(default_factory=list)

    async def refused(self, subject: str, kind: str) -> bool:
        """Whether the server answered -ERR 'Permissions Violation for <kind> to <subject>'."""
        needle = f'permissions violation for {kind} to "{subject}"'.lower()
        for _ in range(100):
            if any(needle in e.lower() for e in self.errors):
                return True
            await asyncio.sleep(0.02)
        return False


Connect = Callable[[str], Awaitable[Conn]]


@pytest.fixture
async def as_user(nats_server: LocalNatsServer) -> AsyncIterator[Connect]:
    opened: list[Conn] = []

    async def open_as(user: str) -> Conn:
        conn = Conn(nc=Client())

        async def on_error(exc: Exception) -> None:
            conn.errors.append(str(exc))

        await conn.nc.connect(
            nats_server.url_for(user),
            inbox_prefix=inbox_prefix(user),
            error_cb=on_error,
            allow_reconnect=False,
        )
        opened.append(conn)
        return conn

    yield open_as
    for conn in opened:
        await conn.nc.close()


async def collect(conn: Conn, subject: str, queue: str = "") -> list[Msg]:
    got: list[Msg] = []

    async def keep(msg: Msg) -> None:
        got.append(msg)

    await conn.nc.subscribe(subject, queue=queue, cb=keep)
    await flush(conn.nc)
    return got


async def pong(msg: Msg) -> None:
    await msg.respond(b"pong")


async def test_a_tenant_hears_nothing_but_its_own_inbox(as_user: Connect) -> None:
    acme = await as_user("org-acme")
    gateway = await as_user("gateway")
    # subject refused -> a message the gateway may publish that it would otherwise have heard
    # (inboxes: nobody but a responder may publish there; the refusal is the proof)
    for subject, probe in {
        "mcp.org-globex.context": "mcp.org-globex.context",  # another org's requests
        "mcp.>": "mcp.org-acme.context",
        "_INBOX.>": None,  # every reply, with its stamps
        f"{inbox_prefix('org-globex')}.>": None,  # another org's replies
        f"{inbox_prefix('gateway')}.>": None,
        "usage.>": None,
        "audit.>": "audit.org-acme.gateway",
        "control.>": "control.keys",
        "$KV.>": "$KV.ORG_SETTINGS.org-acme",
    }.items():
        got = await collect(acme, subject)
        assert await acme.refused(subject, "subscription"), subject
        if probe is not None:
            await gateway.nc.publish(probe, b"secret")
            await gateway.nc.flush()
            await asyncio.sleep(0.05)
        assert got == [], subject
    assert not gateway.errors  # every probe was a legitimate publish of the gateway


async def test_a_tenant_publishes_only_its_own_requests(as_user: Connect, nats_url: str) -> None:
    acme = await as_user("org-acme")
    context = await as_user("svc-context")
    served = await collect(context, "mcp.*.context", queue="context")
    commands = await collect(context, "control.tenants.*.context")
    attempts = {
        "mcp.org-globex.context": b"cross-tenant call",
        "control.tenants.delete.context": b'{"org_id": "org-globex"}',
        "control.keys": b"{}",
        "usage.org-acme.context": b"forged usage",
        "audit.org-acme.gateway": b"forged audit",
        "$KV.ORG_SETTINGS.org-acme": b'{"tier": "enterprise"}',
        "$KV.GATEWAY_RATE_MINUTE.org.org-globex.1": b"999999",
        "$JS.API.STREAM.CREATE.EVIL": b"{}",
        "$JS.API.STREAM.PURGE.USAGE": b"{}",
    }
    for subject, payload in attempts.items():
        await acme.nc.publish(subject, payload)
        assert await acme.refused(subject, "publish"), subject
    # Its own subject space works: a request to its own org reaches the service and the reply
    # comes back on its own inbox (the service may answer what it received: allow_responses).
    reply_sub = await context.nc.subscribe("mcp.*.context", queue="answer", cb=pong)
    await flush(context.nc)
    try:
        reply = await acme.nc.request("mcp.org-acme.context", b"ping", timeout=5)
    except nats.errors.TimeoutError:
        pytest.fail(f"no reply; service errors: {context.errors}; tenant errors: {acme.errors[-3:]}")
    assert reply.data == b"pong" and reply.subject.startswith(inbox_prefix("org-acme"))
    await reply_sub.unsubscribe()
    assert [m.subject for m in served] == ["mcp.org-acme.context"]  # nothing forged got through
    assert commands == []
    gateway = await connect(nats_url, name="kv-check")
    try:  # the forged settings are not in the bucket (whatever the gateway may have put there)
        stored = await (await gateway.kv("ORG_SETTINGS")).get("org-acme")
        assert stored.value != attempts["$KV.ORG_SETTINGS.org-acme"]
    except KeyNotFoundError:
        pass
    finally:
        await gateway.close()


async def test_a_service_hears_only_its_own_requests_and_says_only_its_own_events(
    as_user: Connect,
) -> None:
    llm = await as_user("svc-llm")
    for subject in (
        "mcp.*.context",  # another service's requests (and their stamps)
        "mcp.>",
        "_INBOX.>",
        f"{inbox_prefix('gateway')}.>",  # the gateway's replies
        f"{inbox_prefix('svc-context')}.>",
        "control.tenants.*.context",
        "control.keys",
        "usage.>",
    ):
        await collect(llm, subject)
        assert await llm.refused(subject, "subscription"), subject
    for subject in (
        "usage.org-acme.context",  # usage in another service's name
        "audit.org-acme.gateway",
        "mcp.org-acme.context",  # llm calls nothing downstream
        "control.tenants.delete.context",
        "$KV.ORG_SETTINGS.org-acme",  # KV belongs to the gateway
        "$JS.API.STREAM.CREATE.EVIL",  # a stream could republish into usage.>
        "$JS.API.STREAM.UPDATE.USAGE",
    ):
        await llm.nc.publish(subject, b"x")
        assert await llm.refused(subject, "publish"), subject


async def test_a_service_may_call_its_downstream_services_only(as_user: Connect) -> None:
    debate = await as_user("svc-debate")
    llm = await as_user("svc-llm")
    await llm.nc.subscribe("mcp.*.llm", queue="llm", cb=pong)
    await flush(llm.nc)
    assert (await debate.nc.request("mcp.org-acme.llm", b"x", timeout=5)).data == b"pong"
    await debate.nc.publish("mcp.org-acme.rag", b"x")
    assert await debate.refused("mcp.org-acme.rag", "publish")


async def test_only_a_service_with_callees_asks_the_gateway_for_its_jobs_stamps(as_user: Connect) -> None:
    gateway = await as_user("gateway")
    debate = await as_user("svc-debate")
    llm = await as_user("svc-llm")
    await gateway.nc.subscribe("control.stamps.*", queue="gateway", cb=pong)  # and it may answer
    await flush(gateway.nc)
    assert (await debate.nc.request("control.stamps.debate", b"x", timeout=5)).data == b"pong"
    await debate.nc.publish("control.stamps.rag", b"x")  # not in another service's name
    assert await debate.refused("control.stamps.rag", "publish")
    await llm.nc.publish("control.stamps.llm", b"x")  # llm calls no one
    assert await llm.refused("control.stamps.llm", "publish")


async def test_a_service_reads_org_settings_but_cannot_write_them(
    as_user: Connect, nats_server: LocalNatsServer, nats_url: str
) -> None:
    gateway = await connect(nats_url, name="owner")
    context = await connect(nats_server.url_for("svc-context"), name="reader")
    key = f"org-kv{uuid.uuid4().hex[:8]}"  # an org of this test only: the bucket is shared
    owned = await gateway.kv("ORG_SETTINGS")
    try:
        await owned.put(key, msgspec.json.encode({"v": 1}))
        reader = await context.kv("ORG_SETTINGS", create=False)
        assert msgspec.json.decode((await reader.get(key)).value or b"") == {"v": 1}
        with pytest.raises((nats.errors.Error, TimeoutError)):  # refused: no JetStream ack
            await asyncio.wait_for(reader.put(key, b"{}"), timeout=2)
        assert msgspec.json.decode((await reader.get(key)).value or b"") == {"v": 1}
    finally:
        await owned.purge(key)
        await context.close()
        await gateway.close()


async def test_a_wrong_password_or_an_unknown_user_is_refused(nats_server: LocalNatsServer) -> None:
    for url in (
        nats_server.url.replace("nats://", "nats://org-acme:wrong@"),
        nats_server.url.replace("nats://", "nats://mallory:x@"),
        nats_server.url,  # no credentials at all
    ):
        with pytest.raises(nats.errors.Error):
            await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)


async def test_an_issued_publisher_works_after_a_reload_and_a_revoked_one_is_cut_off() -> None:
    """What `meshctl bus-user issue|revoke` does to a running server: users, config, SIGHUP."""
    users = BusUsers.generate(mesh_users(["context"]))
    server = LocalNatsServer(users=users)
    try:
        users.issue_tenant("org-initech")
        with pytest.raises(nats.errors.Error):  # not in force before the reload
            await nats.connect(users.url(server.url, "org-initech"), allow_reconnect=False, connect_timeout=2)
        server.reload()
        tenant = await nats.connect(users.url(server.url, "org-initech"), allow_reconnect=False)
        assert tenant.is_connected
        users.revoke_tenant("org-initech")
        server.reload()
        for _ in range(100):  # the server closes the connection of a user it no longer has
            if tenant.is_closed:
                break
            await asyncio.sleep(0.02)
        assert tenant.is_closed
    finally:
        server.close()
