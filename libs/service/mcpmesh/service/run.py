"""Run a service: on the bus (default), or alone over stdio / Streamable HTTP for development.

python -m mcpmesh.<service>                 serve on NATS_URL as a nats.micro service
python -m mcpmesh.<service> --stdio         one local client over stdio, acting for MCPMESH_DEV_ORG
python -m mcpmesh.<service> --http 8000     Streamable HTTP on 127.0.0.1:8000/mcp, same
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
import time
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any
from wsgiref.simple_server import WSGIServer

import msgspec
from nats.aio.msg import Msg
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import EndpointStats, Service, ServiceConfig
from prometheus_client import start_http_server

from mcpmesh.bus import Bus, Deadline, connect, flush, redact_url
from mcpmesh.bus.frames import ReplyWriter, ResultTooLarge, wants_stream
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.proto.headers import DEADLINE
from mcpmesh.proto.ids import InvalidIdentifier
from mcpmesh.proto.subjects import (
    TENANT_ACTIONS,
    cancel_queue_subject,
    instance_queue_subject,
    org_of_service_subject,
    service_queue_subject,
    tenant_action_of,
    tenant_control_subject,
)
from mcpmesh.secrets import SecretsConfigError
from mcpmesh.service.admission import Admission, Overloaded
from mcpmesh.service.call import CURRENT_CALL, Call
from mcpmesh.service.cancel import on_notice
from mcpmesh.service.micro import add_concurrent_endpoint
from mcpmesh.service.server import MeshService
from mcpmesh.service.settings import ServiceSettings, StartupError
from mcpmesh.service.vault import SECRETS_METADATA
from mcpmesh.store import StoreNotConfigured
from mcpmesh.telemetry.logs import configure_logging, get_logger
from mcpmesh.telemetry.tracing import setup_tracing
from mcpmesh.tenancy.stamp import ISSUER, Stamp

log = get_logger("mcpmesh.service")


class BusServer:
    """A service on the bus: `mcp.*.<service>` in queue group `<service>`, registered with nats.micro.

    Each replica also serves `mcp.*.<service>.<its micro id>`, so the gateway can address the
    replicas that still answer health checks when another one stopped (see the gateway README).
    """

    def __init__(self, service: MeshService, bus: Bus) -> None:
        self.service = service
        self.bus = bus
        self.micro: Service | None = None
        self.metrics_http: WSGIServer | None = None  # /metrics, when MCPMESH_METRICS_PORT is set
        self.inflight: set[asyncio.Task[None]] = set()  # admitted, queued and being refused
        self.gate = Admission(service.settings.admission, name=f"service {service.name!r}")
        service.metrics.admission_inflight.set_function(lambda: self.gate.inflight)
        service.metrics.admission_queued.set_function(lambda: self.gate.queued)

    async def start(self) -> None:
        svc = self.service
        self._serve_metrics()
        self.micro = await add_service(
            self.bus.nc,
            ServiceConfig(
                name=svc.name,
                version=svc.version,
                description=svc.description or f"mcpmesh {svc.name}",
                metadata={
                    "tools": str(len(svc.tool_scopes)),
                    SECRETS_METADATA: str(svc.keeps_secrets).lower(),
                },
                stats_handler=self._stats,
            ),
        )
        for name, subject in (
            ("mcp", service_queue_subject(svc.name)),
            ("mcp-replica", instance_queue_subject(svc.name, self.micro.id)),
        ):
            await add_concurrent_endpoint(
                self.micro,
                name=name,
                subject=subject,
                queue_group=svc.name,
                handler=self._on_request,
                tasks=self.inflight,
            )
        for action in TENANT_ACTIONS:
            await self.micro.add_endpoint(
                name=f"tenant-{action}",
                subject=tenant_control_subject(action, svc.name),
                queue_group=svc.name,
                handler=self._on_tenant_command,
            )
        await self.bus.nc.subscribe(cancel_queue_subject(svc.name), cb=self._on_cancel)
        await flush(self.bus.nc)

    async def _on_cancel(self, msg: Msg) -> None:
        on_notice(self.service, msg.subject, msg.data, msg.headers)

    def _serve_metrics(self) -> None:
        """This replica's /metrics on MCPMESH_METRICS_PORT (a daemon thread), for Prometheus to scrape."""
        settings = self.service.settings.metrics
        if settings.port is None:
            return
        try:
            self.metrics_http, _thread = start_http_server(
                settings.port, addr=settings.host, registry=self.service.metrics.registry
            )
        except OSError as exc:
            raise SystemExit(
                f"mcpmesh-{self.service.name}: cannot serve metrics on {settings.host}:{settings.port} "
                f"({exc.strerror}): set MCPMESH_METRICS_PORT to a free port, or unset it"
            ) from None
        log.info("serving metrics", port=self.metrics_http.server_port, path="/metrics")

    async def _on_tenant_command(self, req: Request) -> None:
        action = tenant_action_of(req.subject)
        reply = await self.service.tenant_data(action, req.data)
        await req.respond(msgspec.json.encode(reply))

    def _on_request(self, req: Request) -> Coroutine[Any, Any, str | None]:
        """Admit (or queue) a request in arrival order; the returned work runs as its own task."""
        org_id = admission_org(req.subject)
        admitted = self.gate.try_enter(org_id)
        return self._serve(req, org_id, admitted)

    async def _serve(self, req: Request, org_id: str, admitted: bool) -> str | None:
        """Serve and answer one request; the error code it ended with, None when it was ok."""
        writer = ReplyWriter(
            req.respond,
            self.bus.nc.max_payload,
            streaming=wants_stream(req.headers),
            max_result_bytes=self.service.settings.max_result_bytes,
        )
        reply, status = await dispatch(
            self.service,
            self.gate,
            req.subject,
            req.data,
            req.headers,
            tried=(org_id, admitted),
            writer=writer,
        )
        try:
            await writer.finish(reply)
        except ResultTooLarge as exc:
            log.warning("reply too large", error=exc.error.message)
            await self._respond(req, self.service.error_reply(req.data, exc))
            return exc.error.code.value
        except Exception as exc:  # caller gone or connection lost: nothing left to tell anyone
            log.warning("reply not sent", error=repr(exc))
        return None if status == "ok" else status

    @staticmethod
    async def _respond(req: Request, reply: bytes) -> None:
        try:
            await req.respond(reply)
        except Exception as exc:  # caller gone or connection lost: nothing left to tell anyone
            log.warning("reply not sent", error=repr(exc))

    def _stats(self, _endpoint: EndpointStats) -> dict[str, float]:
        stats = self.service.stats
        calls = stats["calls"] or 1
        return {
            "calls": stats["calls"],
            "errors": stats["errors"],
            "inflight": self.gate.inflight,
            "queued": self.gate.queued,
            "refused": sum(self.gate.refused.values()),
            "avg_latency_ms": round(stats["latency_ms_total"] / calls, 3),
        }

    async def stop(self, grace_s: float) -> None:
        """Stop taking requests, let in-flight calls (and running jobs) finish, then drain the connection."""
        if self.micro is not None:
            await self.micro.stop()
        if self.metrics_http is not None:
            await asyncio.to_thread(self.metrics_http.shutdown)
            self.metrics_http.server_close()
        jobs = self.service.jobs
        jobs_stopped = asyncio.ensure_future(jobs.stop(grace_s) if jobs else asyncio.sleep(0))
        if self.inflight:
            await asyncio.wait(set(self.inflight), timeout=grace_s)
        await jobs_stopped
        await self.service.stopping()
        await self.bus.close()


def admission_org(subject: str) -> str:
    """The org a request counts against at admission (from its subject, for fair shares only:
    the stamp is checked when it is served, and a bad subject refused there)."""
    try:
        return org_of_service_subject(subject)
    except InvalidIdentifier:
        return "-"


async def dispatch(
    service: MeshService,
    gate: Admission,
    subject: str,
    data: bytes,
    headers: Mapping[str, str] | None,
    *,
    tried: tuple[str, bool] | None = None,
    writer: ReplyWriter | None = None,
) -> tuple[bytes, str]:
    """Serve one request as every path does (the bus, `LocalHarness`): admission by the
    subject's org, then `service.handle_with_status` (stamp, org, scope, tier, arguments, the
    SDK); the reply and the status it ended with. `tried`: (org, admitted) when the caller
    already tried `gate.try_enter` (the bus does, before it spawns the request's task);
    `writer`: the request's reply inbox, for progress frames while the call runs."""
    if tried is None:
        org_id = admission_org(subject)
        admitted = gate.try_enter(org_id)
    else:
        org_id, admitted = tried
    if not admitted:
        deadline = request_deadline(service, data, headers)
        try:
            await gate.enter(org_id, wait_s=deadline.remaining())
        except Overloaded as exc:
            return service.refusal(data, exc), ErrorCode.UNAVAILABLE.value
        # The wait counted against the request's time: the handler keeps the same deadline.
        headers = {**(headers or {}), DEADLINE: deadline.header()}
    try:
        return await service.handle_with_status(subject, data, headers, writer)
    finally:
        gate.leave(org_id)


class _Params(msgspec.Struct):
    name: Any = None


class _Head(msgspec.Struct):
    method: Any = None
    params: _Params | None = None


def request_deadline(service: MeshService, data: bytes, headers: Mapping[str, str] | None) -> Deadline:
    """The deadline a request is served by, from its arrival: min(the caller's `Mcp-Deadline`,
    the tool's budget (`MCPMESH_CALL_TIMEOUT_S` for other methods), `MCPMESH_MAX_CALL_S`).
    A queued request waits for a slot no longer than that (nor `MCPMESH_QUEUE_WAIT_S`)."""
    try:
        head = msgspec.json.decode(data, type=_Head)
    except (msgspec.DecodeError, msgspec.ValidationError):
        head = _Head()
    tool = head.params.name if head.method == "tools/call" and head.params is not None else None
    return Deadline.from_header((headers or {}).get(DEADLINE), service.time_budget(tool))


async def serve_on_bus(service: MeshService, settings: ServiceSettings, stop: asyncio.Event) -> None:
    if not settings.stamp_public_key:
        raise SystemExit(
            f"mcpmesh-{service.name}: set MCPMESH_STAMP_PUBLIC_KEY (or _FILE) to the gateway's stamp public key"
        )
    try:
        bus = await connect(settings.nats_url, name=f"mcpmesh-{service.name}")
    except MeshException as exc:
        raise SystemExit(f"mcpmesh-{service.name}: {exc.error.message}") from None
    await service.started(settings, bus)
    server = BusServer(service, bus)
    await server.start()
    log.info(
        "serving on the bus", subject=service_queue_subject(service.name), nats=redact_url(settings.nats_url)
    )
    await stop.wait()
    log.info("shutting down", inflight=len(server.inflight))
    await server.stop(settings.shutdown_grace_s)


def local_call(service: MeshService, settings: ServiceSettings) -> Call:
    """The Call a local stdio/HTTP run acts as: the dev org, every scope."""
    now = int(time.time())
    stamp = Stamp(
        org_id=settings.dev_org,
        tier="enterprise",
        scopes=["*", "admin"],
        sub="key-local",
        aud=[service.name],
        exp=now + 10**9,
        iat=now,
        jti="local",
        iss=ISSUER,
    )
    return Call(
        service=service, stamp=stamp, token="", request_id="local", deadline=Deadline.after(10**9), bus=None
    )


async def serve_locally(service: MeshService, settings: ServiceSettings, http_port: int | None) -> None:
    await service.started(settings, None)
    CURRENT_CALL.set(local_call(service, settings))
    try:
        if http_port is None:
            await service.mcp.run_stdio_async()
        else:
            await service.mcp.run_streamable_http_async(port=http_port)
    finally:
        await service.stopping()


def run(service: MeshService, argv: Sequence[str] | None = None) -> None:
    """The `__main__` of every service."""
    parser = argparse.ArgumentParser(
        prog=f"python -m mcpmesh.{service.name}",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--stdio", action="store_true", help="serve one local client over stdio")
    mode.add_argument("--http", type=int, metavar="PORT", help="serve Streamable HTTP on 127.0.0.1:PORT")
    args = parser.parse_args(argv)
    settings = ServiceSettings.from_env()
    configure_logging(f"mcp-{service.name}", json=None)
    setup_tracing(f"mcp-{service.name}")

    async def main() -> None:
        if args.stdio or args.http:
            await serve_locally(service, settings, args.http)
            return
        # What is loaded by now lives as long as the process: kept out of the cyclic collector's
        # sight, a full collection no longer walks it (tens of ms of stalled event loop each time).
        gc.freeze()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve_on_bus(service, settings, stop)

    try:
        asyncio.run(main())
    except (StoreNotConfigured, SecretsConfigError, StartupError) as exc:  # store, master key, Qdrant path
        sys.exit(f"mcpmesh-{service.name}: {exc}")
    except KeyboardInterrupt:
        sys.exit(130)
