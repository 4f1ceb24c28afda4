"""The broker itself refuses a tenant publisher's cross-tenant publishes (compose/nats config)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import nats
import nats.errors
import pytest

from mcpmesh.dev.natsproc import LocalNatsServer, _free_port
from mcpmesh.proto.subjects import org_inbox_prefix
from mcpmesh.tenancy.natsauth import render_server_config

CONFIG = Path(__file__).parents[3] / "compose" / "nats" / "nats-server.conf"
PASSWORDS = {
    "NATS_GATEWAY_PASSWORD": "gw-secret",
    "NATS_SVC_PASSWORD": "svc-secret",
    "NATS_ORG_ACME_PASSWORD": "acme-secret",
    "NATS_ORG_GLOBEX_PASSWORD": "globex-secret",
}


def test_shipped_config_is_the_generated_one() -> None:
    assert CONFIG.read_text() == render_server_config(["org-acme", "org-globex"])


@pytest.fixture
def secured_nats(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalNatsServer]:
    for name, value in PASSWORDS.items():
        monkeypatch.setenv(name, value)
    text = CONFIG.read_text().replace("http_port: 8222", f"http_port: {_free_port()}")
    server = LocalNatsServer(config=text)
    yield server
    server.close()


async def test_tenant_user_cannot_publish_to_another_orgs_subjects(secured_nats: LocalNatsServer) -> None:
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    service = await nats.connect(secured_nats.url, user="svc-context", password="svc-secret")
    received: list[str] = []

    async def answer(msg: nats.aio.msg.Msg) -> None:
        received.append(msg.subject)
        await msg.respond(b"pong")

    await service.subscribe("mcp.*.context", queue="context", cb=answer)
    await service.flush()

    acme = await nats.connect(
        secured_nats.url,
        user="org-acme",
        password="acme-secret",
        inbox_prefix=org_inbox_prefix("org-acme"),
        error_cb=on_error,
    )
    reply = await acme.request("mcp.org-acme.context", b"ping", timeout=5)
    assert reply.data == b"pong"

    await acme.publish("mcp.org-globex.context", b"sneaky")
    await acme.flush()
    for _ in range(50):
        if errors:
            break
        await asyncio.sleep(0.05)
    assert any(
        "permissions violation" in str(e).lower() and "mcp.org-globex.context" in str(e) for e in errors
    )
    assert received == ["mcp.org-acme.context"]  # the sneaky message never reached the service

    with pytest.raises(nats.errors.Error):
        # Its own inbox prefix is enforced too: another org's inbox is off limits.
        sub = await acme.subscribe(f"{org_inbox_prefix('org-globex')}.>")
        await acme.flush()
        await sub.next_msg(timeout=0.5)
    await acme.close()
    await service.close()


async def test_wrong_password_is_refused(secured_nats: LocalNatsServer) -> None:
    with pytest.raises(nats.errors.Error):
        await nats.connect(
            secured_nats.url,
            user="org-acme",
            password="wrong",
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=2,
        )
