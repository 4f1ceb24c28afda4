"""Drive a MeshService from tests and benchmarks, as the gateway would.

async with ServiceHarness(service, nats_server) as mesh:     # on a real bus, end to end
    result = await mesh.call_tool("org-acme", "create", {"title": "x"})
async with LocalHarness(service) as mesh:                    # in process, no NATS
    result = await mesh.call_tool("org-acme", "create", {"title": "x"})

Both sign a stamp per request and go through the same `dispatch` (admission, then the
stamp, org, scope, tier and argument checks of `MeshService.handle`); only the transport
differs. A LocalHarness service has no bus: org settings are its tier's defaults and
calls to other services fail with `unavailable`.

On a locked-down server (anything with `url_for(user)`, e.g. the `nats_server` fixture) the
service connects as `svc-<name>` and the harness's client as the gateway, each with its
own NATS permissions; a plain URL is used as it is for both.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Final, Protocol

import msgspec

from mcpmesh.bus import Bus, Deadline, connect, flush
from mcpmesh.bus.mcp import exchange, request_body, result_of
from mcpmesh.proto import headers as h
from mcpmesh.proto.errors import MeshError, error_of_tool_result
from mcpmesh.proto.events import AuditEvent, TenantCommand, TenantDataReply
from mcpmesh.proto.subjects import (
    AUDIT_STREAM,
    GATEWAY_USER,
    audit_subject,
    service_subject,
    service_user,
    tenant_control_subject,
)
from mcpmesh.service.admission import Admission
from mcpmesh.service.run import BusServer, dispatch
from mcpmesh.service.server import MeshService
from mcpmesh.service.settings import ServiceSettings
from mcpmesh.tenancy.commands import CommandSigner
from mcpmesh.tenancy.stamp import StampSigner, generate_signing_key_pem, public_key_pem

#: What no client-visible text may contain: a library's name or docs, a traceback, a source
#: file, a module path, an echo of pydantic's input.
INTERNALS: Final = (
    "pydantic",
    "errors.pydantic.dev",
    "Traceback",
    'File "',
    ".py",
    "site-packages",
    "input_value",
    "validation error for",
    "mcpmesh.",
)


def internals_in(text: str) -> list[str]:
    """The markers of internals (see INTERNALS) that `text` contains; [] when it is clean."""
    return [marker for marker in INTERNALS if marker in text]


def logged_failures(records: Iterable[logging.LogRecord]) -> list[str]:
    """Log records that carry a traceback or were logged at ERROR or above (e.g. pytest's
    `caplog.records`): what a client's bad input must never cause."""
    return [
        f"{r.name}: {r.getMessage()}"
        for r in records
        if r.exc_info or r.levelno >= logging.ERROR or "Traceback" in r.getMessage()
    ]


async def audit_events(
    nats: NatsUsers, org_id: str, service: str, n: int, match: Callable[[AuditEvent], bool] = lambda _e: True
) -> list[AuditEvent]:
    """The first `n` events `match` accepts among `service`'s audit events of `org_id` in the AUDIT
    stream, read as the gateway's writer reads them (waits up to 10 s for them)."""
    bus = await connect(nats.url_for(GATEWAY_USER), name="audit-read")
    found: list[AuditEvent] = []
    try:
        sub = await bus.js.pull_subscribe(audit_subject(org_id, service), stream=AUDIT_STREAM)
        async with asyncio.timeout(10):
            while len(found) < n:
                for msg in await sub.fetch(10, timeout=5):
                    event = msgspec.json.decode(msg.data, type=AuditEvent)
                    if match(event):
                        found.append(event)
    finally:
        await bus.close()
    return found


class ToolFailed(Exception):
    """A tool answered with `isError`; `text` is what the client would read, `error` the
    `MeshError` of its structured content (code, message, retryable, details)."""

    def __init__(self, text: str, error: MeshError | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.error = error


class NatsUsers(Protocol):
    """A NATS server with the mesh's users (`LocalNatsServer`): the URL each user connects with."""

    def url_for(self, user: str) -> str: ...


class Harness:
    """What both harnesses share: stamps for any org and scopes, requests and tool calls."""

    def __init__(
        self, service: MeshService, settings: ServiceSettings | None, signing_key_pem: str | None
    ) -> None:
        self.service = service
        self.signing_key_pem = signing_key_pem or generate_signing_key_pem()
        self.signer = StampSigner(self.signing_key_pem)
        self.settings = dataclasses.replace(
            settings or ServiceSettings(), stamp_public_key=public_key_pem(self.signing_key_pem)
        )

    async def raw(
        self, org_id: str, body: bytes, *, stamp: str, deadline_s: float = 10.0, service: str | None = None
    ) -> bytes:
        """One JSON-RPC request body as `org_id`, stamped with `stamp`: the raw reply body."""
        raise NotImplementedError

    def stamp(
        self,
        org_id: str,
        scopes: list[str] | None = None,
        *,
        tier: str = "pro",
        sub: str = "key-test",
        service: str | None = None,
        key_tags: list[str] | None = None,
    ) -> str:
        return self.signer.mint(
            org_id=org_id,
            tier=tier,
            scopes=scopes if scopes is not None else ["*"],
            sub=sub,
            service=service or self.service.name,
            key_tags=key_tags or (),
        )

    async def request(
        self,
        org_id: str,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        scopes: list[str] | None = None,
        stamp: str | None = None,
    ) -> dict[str, Any]:
        """A JSON-RPC request; a JSON-RPC error raises MeshException."""
        reply = await self.raw(
            org_id, request_body(method, params), stamp=stamp or self.stamp(org_id, scopes)
        )
        return result_of(reply)

    async def call_tool(
        self,
        org_id: str,
        tool: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        scopes: list[str] | None = None,
        stamp: str | None = None,
    ) -> Any:
        """The tool's structured result (or its text); a tool error raises ToolFailed."""
        result = await self.request(
            org_id,
            "tools/call",
            {"name": tool, "arguments": dict(arguments or {})},
            scopes=scopes,
            stamp=stamp,
        )
        text = " ".join(c.get("text", "") for c in result.get("content", []) if c.get("type") == "text")
        if result.get("isError"):
            raise ToolFailed(text, error_of_tool_result(result))
        structured = result.get("structuredContent")
        if structured is not None:
            return structured.get("result", structured) if set(structured) == {"result"} else structured
        try:
            return msgspec.json.decode(text)
        except msgspec.DecodeError:
            return text


class ServiceHarness(Harness):
    """Runs `service` on a real bus, as a replica would, reached through the gateway's NATS user."""

    def __init__(
        self,
        service: MeshService,
        nats: str | NatsUsers,
        *,
        settings: ServiceSettings | None = None,
        signing_key_pem: str | None = None,
    ) -> None:
        super().__init__(service, settings, signing_key_pem)
        if isinstance(nats, str):
            service_url = self.client_url = nats
        else:
            service_url = nats.url_for(service_user(service.name))
            self.client_url = nats.url_for(GATEWAY_USER)
        self.settings = dataclasses.replace(self.settings, nats_url=service_url)
        self.server: BusServer | None = None
        self.client: Bus | None = None

    async def __aenter__(self) -> ServiceHarness:
        # The client is the gateway: it owns the streams the service's usage events land in.
        self.client = await connect(self.client_url, name="harness-client")
        await self.client.ensure_streams()
        bus = await connect(self.settings.nats_url, name=f"harness-{self.service.name}")
        try:
            await self.service.started(self.settings, bus)
        except BaseException:
            await bus.close()
            await self.client.close()
            raise
        self.server = BusServer(self.service, bus)
        await self.server.start()
        await flush(bus.nc)  # the server has its subscriptions before the first request
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.client is not None:
            await self.client.close()
        if self.server is not None:
            await self.server.stop(grace_s=min(5.0, self.settings.shutdown_grace_s))

    async def kill(self) -> None:
        """Stop this replica as a crash would: its jobs are abandoned without a single write (their
        leases run out for another replica's sweeper), its connection closes without draining."""
        assert self.server is not None, "use `async with ServiceHarness(...)`"
        if self.service.jobs is not None:
            await self.service.jobs.abandon()
        await self.server.bus.nc.close()
        self.server = None

    async def raw(
        self, org_id: str, body: bytes, *, stamp: str, deadline_s: float = 10.0, service: str | None = None
    ) -> bytes:
        assert self.client is not None, "use `async with ServiceHarness(...)`"
        return await exchange(
            self.client,
            org_id=org_id,
            service=service or self.service.name,
            body=body,
            stamp=stamp,
            deadline=Deadline.after(deadline_s),
            request_id=uuid.uuid4().hex,
        )

    async def tenant_command(
        self, action: str, org_id: str, *, authorization: str | None = None
    ) -> TenantDataReply:
        """Ask the service to delete or export one org's data, authorized as the gateway does
        (or with the given `authorization`, e.g. a forged one)."""
        assert self.client is not None, "use `async with ServiceHarness(...)`"
        if authorization is None:
            authorization = CommandSigner(self.signing_key_pem).authorize(
                action=action, org_id=org_id, service=self.service.name
            )
        msg = await self.client.request(
            tenant_control_subject(action, self.service.name),
            msgspec.json.encode(TenantCommand(org_id=org_id, authorization=authorization)),
            deadline=Deadline.after(10),
        )
        return msgspec.json.decode(msg.data, type=TenantDataReply)


class LocalHarness(Harness):
    """Runs `service` in this process without NATS: each request goes through the same
    `dispatch` as on the bus (admission with the service's settings, then every check of
    `MeshService.handle`), on the subject the gateway would use."""

    def __init__(
        self,
        service: MeshService,
        *,
        settings: ServiceSettings | None = None,
        signing_key_pem: str | None = None,
    ) -> None:
        super().__init__(service, settings, signing_key_pem)
        self.gate = Admission(self.settings.admission, name=f"service {service.name!r}")

    async def __aenter__(self) -> LocalHarness:
        await self.service.started(self.settings, None)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        grace_s = min(5.0, self.settings.shutdown_grace_s)
        if self.service.jobs is not None:  # as BusServer.stop: running jobs first, then the service
            await self.service.jobs.stop(grace_s)
        await self.service.stopping()

    async def raw(
        self, org_id: str, body: bytes, *, stamp: str, deadline_s: float = 10.0, service: str | None = None
    ) -> bytes:
        headers = {
            h.STAMP: stamp,
            h.REQUEST_ID: uuid.uuid4().hex,
            h.DEADLINE: Deadline.after(deadline_s).header(),
        }
        subject = service_subject(org_id, service or self.service.name)
        reply, _ = await dispatch(self.service, self.gate, subject, body, headers)
        return reply
