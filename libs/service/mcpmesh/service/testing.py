"""Drive a MeshService on a real bus from tests and benchmarks, as the gateway would.

async with ServiceHarness(service, nats_url) as mesh:
    result = await mesh.call_tool("org-acme", "create", {"title": "x"})
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import msgspec

from mcpmesh.bus import Bus, Deadline, connect
from mcpmesh.bus.mcp import exchange, request_body, result_of
from mcpmesh.service.run import BusServer
from mcpmesh.service.server import MeshService
from mcpmesh.service.settings import ServiceSettings
from mcpmesh.tenancy.stamp import StampSigner, generate_signing_key_pem, public_key_pem


class ToolFailed(Exception):
    """A tool answered with `isError`; `text` is what the client would read."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class ServiceHarness:
    """Runs `service` on the bus at `nats_url` and signs stamps for any org and scopes."""

    def __init__(
        self,
        service: MeshService,
        nats_url: str,
        *,
        settings: ServiceSettings | None = None,
        signing_key_pem: str | None = None,
    ) -> None:
        self.service = service
        self.nats_url = nats_url
        self.signing_key_pem = signing_key_pem or generate_signing_key_pem()
        self.signer = StampSigner(self.signing_key_pem)
        base = settings or ServiceSettings()
        self.settings = dataclasses.replace(
            base, nats_url=nats_url, stamp_public_key=public_key_pem(self.signing_key_pem)
        )
        self.server: BusServer | None = None
        self.client: Bus | None = None

    async def __aenter__(self) -> ServiceHarness:
        bus = await connect(self.nats_url, name=f"harness-{self.service.name}")
        try:
            await bus.ensure_streams()
            await self.service.started(self.settings, bus)
        except BaseException:
            await bus.close()
            raise
        self.server = BusServer(self.service, bus)
        await self.server.start()
        self.client = await connect(self.nats_url, name="harness-client")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.client is not None:
            await self.client.close()
        if self.server is not None:
            await self.server.stop(grace_s=5)

    def stamp(
        self,
        org_id: str,
        scopes: list[str] | None = None,
        *,
        tier: str = "pro",
        sub: str = "key-test",
        service: str | None = None,
    ) -> str:
        return self.signer.mint(
            org_id=org_id,
            tier=tier,
            scopes=scopes if scopes is not None else ["*"],
            sub=sub,
            service=service or self.service.name,
        )

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
            raise ToolFailed(text)
        structured = result.get("structuredContent")
        if structured is not None:
            return structured.get("result", structured) if set(structured) == {"result"} else structured
        try:
            return msgspec.json.decode(text)
        except msgspec.DecodeError:
            return text
