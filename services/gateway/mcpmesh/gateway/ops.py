"""Operations endpoints: liveness, readiness, service health, Prometheus, resource metadata.

`/health`, `/ready`, `/health/services` and the RFC 9728 document are public (no key);
`/metrics` is public too, like any Prometheus target (keep it off the public network, or
behind the ingress, in production).
"""

from __future__ import annotations

from aiohttp import web

from mcpmesh.gateway.auth import resource_metadata
from mcpmesh.gateway.router import SERVER_VERSION
from mcpmesh.gateway.state import STATE


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": SERVER_VERSION})


async def ready(request: web.Request) -> web.Response:
    state = request.app[STATE]
    services = state.discovery.names()
    checks = {
        "started": state.started,
        "nats": state.bus.connected,
        "discovery": state.discovery.rounds > 0,
        "services": bool(services),
    }
    ok = all(checks.values())
    body = {"status": "ready" if ok else "not ready", "checks": checks, "services": services}
    return web.json_response(body, status=200 if ok else 503)


async def service_health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if not state.bus.connected:
        return web.json_response(
            {"status": "down", "reason": "not connected to NATS", "services": {}}, status=503
        )
    services = await state.discovery.health()
    up = [s for s, v in services.items() if v["status"] == "up"]
    status = "ok" if services and len(up) == len(services) else ("degraded" if up else "down")
    return web.json_response({"status": status, "services": services}, status=200 if up else 503)


async def metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.metrics.services_up.set(len(state.discovery.names()))
    body, content_type = state.metrics.render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


async def protected_resource(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response(resource_metadata(state.base_url(request), state.discovery.names()))
