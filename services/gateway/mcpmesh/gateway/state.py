"""Everything one gateway replica holds while it runs, built by `app.build_app`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from mcpmesh.bus import Bus
from mcpmesh.gateway.admission import GatewayAdmission
from mcpmesh.gateway.cancel import DisconnectWatch
from mcpmesh.gateway.control.principal import Principal
from mcpmesh.gateway.discovery import Discovery
from mcpmesh.gateway.limits import Limiter
from mcpmesh.gateway.observe import GatewayMetrics
from mcpmesh.gateway.router import Router
from mcpmesh.gateway.sessions import EndedSessions, SessionCodec
from mcpmesh.gateway.settings import GatewaySettings

if TYPE_CHECKING:
    pass


class ControlPlaneApi(Protocol):
    """What the MCP side of the gateway uses of `mcpmesh.gateway.control.ControlPlane`."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def authenticate(self, raw_key: str) -> Principal: ...
    async def note_key_use(
        self, principal: Principal, *, action: str, outcome: str, request_id: str
    ) -> None: ...
    def add_routes(self, app: web.Application) -> None: ...
    async def monthly_tool_calls(self, org_id: str) -> int: ...


@dataclass
class GatewayState:
    settings: GatewaySettings
    bus: Bus
    control: ControlPlaneApi
    discovery: Discovery
    router: Router
    limiter: Limiter
    sessions: SessionCodec
    ended: EndedSessions
    metrics: GatewayMetrics
    admission: GatewayAdmission
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    disconnects: DisconnectWatch = field(default_factory=DisconnectWatch)
    started: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def base_url(self, request: web.Request) -> str:
        """The public origin clients reach us at: MCPMESH_PUBLIC_URL, else this request's own."""
        if self.settings.public_url:
            return self.settings.public_url
        return f"{request.scheme}://{request.host}"


STATE: web.AppKey[GatewayState] = web.AppKey("mcpmesh_gateway_state", GatewayState)
