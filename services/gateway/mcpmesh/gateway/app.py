"""The gateway application: routes, and what starts and stops with it.

    app = build_app(GatewaySettings.from_env())
    web.run_app(app, host=settings.host, port=settings.port)

Startup connects NATS (the same client object the control plane was built with),
creates the JetStream streams and KV buckets, starts the control plane and the
service discovery loop. Cleanup stops them in reverse order and drains NATS.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from aiohttp import web
from nats.aio.client import Client

from mcpmesh.bus import Bus, connect, redact_url
from mcpmesh.gateway import endpoint, ops
from mcpmesh.gateway.admission import GatewayAdmission
from mcpmesh.gateway.auth import RESOURCE_METADATA_PATH
from mcpmesh.gateway.discovery import Discovery
from mcpmesh.gateway.limits import Limiter
from mcpmesh.gateway.observe import GatewayMetrics
from mcpmesh.gateway.router import Router
from mcpmesh.gateway.sessions import EndedSessions, SessionCodec
from mcpmesh.gateway.settings import GatewaySettings
from mcpmesh.gateway.stamps import StampCache
from mcpmesh.gateway.state import STATE, ControlPlaneApi, GatewayState
from mcpmesh.proto.errors import MeshException
from mcpmesh.telemetry.logs import get_logger
from mcpmesh.tenancy.stamp import StampSigner

log = get_logger("mcpmesh.gateway")


class GatewayStartupError(RuntimeError):
    """Startup could not complete; the message says what to fix."""


def build_app(settings: GatewaySettings, *, control: ControlPlaneApi | None = None) -> web.Application:
    """The gateway as an aiohttp application. `control` replaces the real control plane (tests)."""
    try:
        signer = StampSigner(settings.stamp_signing_key, ttl_s=settings.stamp_ttl_s)
    except (ValueError, TypeError) as exc:
        raise GatewayStartupError(f"MCPMESH_STAMP_SIGNING_KEY is not usable: {exc}") from None
    # The client connects at startup; everything that holds the bus is built around it now.
    bus = Bus(Client())
    metrics = GatewayMetrics(settings.metrics)
    closers: list[Callable[[], None]] = []
    if control is None:
        from mcpmesh.gateway.control import ControlPlane
        from mcpmesh.store import Store, StoreNotConfigured, connect_database

        try:
            store = Store(connect_database(settings.mongodb_url, settings.mongodb_database), {})
        except StoreNotConfigured as exc:
            raise GatewayStartupError(str(exc)) from None
        closers.append(store.close)
        try:
            control = ControlPlane(
                store,
                bus,
                admin_key=settings.admin_key,
                stamp_signing_key=settings.stamp_signing_key,
                key_pepper=settings.key_pepper,
                key_grace_s=settings.key_grace_s,
                stamp_ttl_s=settings.stamp_ttl_s,
                run_writers=settings.run_writers,
            )
        except ValueError as exc:
            raise GatewayStartupError(f"control plane: {exc}") from None
        key_use = control.key_use
        metrics.watch_audit_queue(lambda: key_use.queued, lambda: key_use.dropped_total)
    discovery = Discovery(
        bus,
        interval_s=settings.discovery_interval_s,
        health_interval_s=settings.health_interval_s,
        forget_after_s=settings.replica_forget_s,
    )
    state = GatewayState(
        settings=settings,
        bus=bus,
        control=control,
        discovery=discovery,
        router=Router(
            bus=bus,
            discovery=discovery,
            stamps=StampCache(signer),
            call_timeout_s=settings.call_timeout_s,
            max_result_bytes=settings.max_result_bytes,
            max_call_s=settings.max_call_s,
            catalog_ttl_s=settings.catalog_ttl_s,
            task_poll_s=settings.task_poll_s,
        ),
        limiter=Limiter(bus, quota_seed=control.monthly_tool_calls),
        sessions=SessionCodec(settings.session_key(), ttl_s=settings.session_ttl_s),
        ended=EndedSessions(bus, ttl_s=settings.session_ttl_s),
        metrics=metrics,
        admission=GatewayAdmission(settings.admission, metrics),
    )
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[STATE] = state
    for path in ("/mcp", "/mcp/{service}"):
        app.router.add_route("*", path, endpoint.handle)
    app.router.add_get("/health", ops.health)
    app.router.add_get("/ready", ops.ready)
    app.router.add_get("/health/services", ops.service_health)
    app.router.add_get("/metrics", ops.metrics)
    app.router.add_get(RESOURCE_METADATA_PATH, ops.protected_resource)
    app.router.add_get(RESOURCE_METADATA_PATH + "/{tail:.*}", ops.protected_resource)
    control.add_routes(app)
    app.on_startup.append(_startup)
    app.on_shutdown.append(_shutdown)
    app.on_cleanup.append(_cleanup)
    app.on_cleanup.append(lambda _app: _close(closers))
    return app


async def _close(closers: list[Callable[[], None]]) -> None:
    """After everything stopped: close what the app opened itself (the store's client)."""
    for close in closers:
        close()


async def _connect(state: GatewayState) -> None:
    """Connect the client the bus (and everything built around it) was created with."""
    settings = state.settings
    try:
        await connect(settings.nats_url, name=f"mcpmesh-{settings.replica_name}", into=state.bus)
    except MeshException as exc:
        raise GatewayStartupError(f"{exc.error.message}; start nats-server or set NATS_URL") from None


async def _startup(app: web.Application) -> None:
    state = app[STATE]
    started = time.monotonic()
    await _connect(state)
    await state.bus.ensure_streams()
    await state.control.start()
    await state.limiter.start()
    await state.discovery.start()
    state.started = True
    log.info(
        "gateway started",
        nats=redact_url(state.settings.nats_url),
        services=state.discovery.names(),
        ms=round((time.monotonic() - started) * 1000, 1),
    )


async def _shutdown(app: web.Application) -> None:
    """Before connections close: end event streams so their handlers return."""
    app[STATE].closing.set()


async def _cleanup(app: web.Application) -> None:
    state = app[STATE]
    state.started = False
    await state.discovery.stop()
    try:
        await state.control.stop()
    finally:
        if not state.bus.nc.is_closed and state.bus.nc.is_connected:
            await state.bus.close()
        elif not state.bus.nc.is_closed:
            with contextlib.suppress(OSError):  # the server went first (ConnectionResetError)
                await state.bus.nc.close()
