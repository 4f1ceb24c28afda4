"""Gateway benchmark: tools/list and tools/call through the gateway vs the same call on the bus.

Layout, all on this machine: one nats-server, the kit's echo service (1 or more replicas,
each its own process), the gateway (`python -m mcpmesh.gateway`, its own process, real
control plane on embedded MongoDB, structured logging on), and this process as the
load generator (aiohttp client for HTTP, a NATS client for the direct bus calls, the
same stamp the gateway would mint). The load generator shares the CPUs with the rest,
so every figure includes its cost.

    .venv/bin/python tools/bench/bench_gateway.py [--replicas 2] [--calls 2000]
        [--concurrency 1 10 50] [--rate 200] [--seconds 10] [--sustain-seconds 15]

Reports, per path: calls/s, p50/p95/p99 (ms), and the gateway/bus ratios; then an
open-loop run at a fixed rate (latency measured from the scheduled send time, so a
stall is not hidden) and a sustained closed-loop throughput run for tools/call; then the
streaming path through the gateway: a tool reporting `--progress` N messages, answered as SSE
(one event each, then the result), against the same call with none (plain JSON), as the added
latency per progress message (`--progress-only` runs just that).

Streaming, measured 2026-12-02 on this 2-CPU machine while other jobs kept it busy (load 4-5):
medians of 100 calls with 50 progress messages and 100 with none, one run per cell of the
range (bench_bus.py for the bus alone):

| path | 50 progress messages | none | added per message |
|---|---|---|---|
| bus (`exchange(on_progress=...)`, bench_bus.py) | 2.6-3.3 ms | 1.0-1.1 ms | 31-43 us |
| gateway SSE, `--no-writers` | 5.2-6.2 ms | 2.3-2.8 ms | 58-67 us |
| gateway SSE, as shipped (usage/audit writers in the gateway) | 6.8-7.9 ms | 2.6-2.9 ms | 82-100 us |

So a progress message costs the caller ~30-40 us on the bus and ~60-100 us end to end through
the gateway's SSE (one frame on the bus, one event written to the HTTP response): 50 of them
add 3-5 ms to a call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from bench_bus import serve_kit  # the same echo service: `echo` and `steps` (progress)

from mcpmesh.bus import Bus, Deadline, connect
from mcpmesh.bus.mcp import request_body
from mcpmesh.dev.mongoproc import LocalMongoServer
from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.dev.runner import free_port
from mcpmesh.proto import headers as h
from mcpmesh.proto.subjects import service_subject
from mcpmesh.tenancy.stamp import StampSigner, generate_signing_key_pem, public_key_pem

ADMIN_KEY = "mk_admin_" + secrets.token_urlsafe(24)
TEXT = "x" * 200
MODERN = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
}


def serve_gateway(writers: bool, key_audit: bool = True) -> None:
    """`python -m mcpmesh.gateway`, optionally without the control plane's usage/audit writers.

    The writers consume every usage and audit event into MongoDB (MONGODB_URL, else a
    SecantusDB process of the benchmark's own), a few calls per batch of events. `--no-writers` leaves
    the events in JetStream (nothing is lost) so the gateway's own cost can be measured.
    `--no-key-audit` (diagnosis only) also skips `note_key_use`, whose once-a-second flush
    of the queued audit events shows in the tail latencies.
    BENCH_GATEWAY_PROFILE=<path> writes a cProfile of the gateway process on exit.
    """
    import cProfile

    from aiohttp import web

    from mcpmesh.gateway.app import build_app
    from mcpmesh.gateway.settings import GatewaySettings
    from mcpmesh.gateway.state import STATE
    from mcpmesh.telemetry.logs import configure_logging
    from mcpmesh.telemetry.tracing import setup_tracing

    configure_logging("gateway")
    setup_tracing("gateway")
    settings = GatewaySettings.from_env()
    app = build_app(settings)
    control: Any = app[STATE].control
    if not writers:

        async def nothing() -> None:
            return None

        for writer in (control.usage_writer, control.audit_writer):
            writer.start = nothing
            writer.stop = nothing
    if not key_audit:  # diagnosis only: skips last_used_at and the per-request audit event

        async def no_note(*_args: Any, **_kwargs: Any) -> None:
            return None

        control.note_key_use = no_note
    profile_path = os.environ.get("BENCH_GATEWAY_PROFILE")
    if profile_path:
        profiler = cProfile.Profile(time.process_time)  # CPU time: contention does not blur it

        async def start_profile(_app: web.Application) -> None:
            profiler.enable()

        async def dump_profile(_app: web.Application) -> None:
            profiler.disable()
            profiler.dump_stats(profile_path)

        app.on_startup.append(start_profile)
        app.on_shutdown.append(dump_profile)
    web.run_app(app, host=settings.host, port=settings.port, access_log=None, print=None, shutdown_timeout=2)


# -- processes ----------------------------------------------------------------------------------


def start_services(
    nats_url: str, public_pem: str, replicas: int, logs: Path
) -> list[subprocess.Popen[bytes]]:
    env = dict(os.environ, NATS_URL=nats_url, MCPMESH_STAMP_PUBLIC_KEY=public_pem, LOG_LEVEL="WARNING")
    env["MCPMESH_ENV"] = "bench"
    procs = []
    for i in range(replicas):
        out = (logs / f"echo-{i}.log").open("ab")
        procs.append(
            subprocess.Popen(
                [sys.executable, str(Path(__file__)), "--serve"], env=env, stdout=out, stderr=out
            )
        )
    return procs


def start_gateway(
    nats_url: str,
    signing_pem: str,
    port: int,
    log_level: str,
    logs: Path,
    writers: bool,
    mongo_url: str,
    key_audit: bool = True,
) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        NATS_URL=nats_url,
        GATEWAY_PORT=str(port),
        MCPMESH_ADMIN_KEY=ADMIN_KEY,
        MCPMESH_STAMP_SIGNING_KEY=signing_pem,
        MCPMESH_ENV="bench",  # JSON log lines, as in production
        LOG_LEVEL=log_level,
        MONGODB_URL=mongo_url,
        MONGODB_DATABASE="mcpmesh_bench",
    )
    out = (logs / "gateway.log").open("ab")
    modes = ["writers" if writers else "no-writers", *([] if key_audit else ["no-key-audit"])]
    argv = [sys.executable, str(Path(__file__)), "--serve-gateway", *modes]
    return subprocess.Popen(argv, env=env, stdout=out, stderr=out)


def http_json(url: str, body: Any = None, *, method: str = "GET", admin: bool = False) -> tuple[int, Any]:
    headers = {"content-type": "application/json"}
    if admin:
        headers["authorization"] = f"Bearer {ADMIN_KEY}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
    except (urllib.error.URLError, ConnectionError):
        return 0, None


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the gateway exited (code {proc.returncode}): see its log")
        status, _ = http_json(f"{base}/ready")
        if status == 200:
            return
        time.sleep(0.2)
    raise SystemExit("the gateway did not become ready (no service discovered?)")


def create_tenant(base: str) -> tuple[str, str]:
    """An org whose limits do not get in the benchmark's way, and a key with every scope."""
    settings = {
        "rate_limits": {"requests_per_minute": 100_000_000, "requests_per_day": 1_000_000_000},
        "monthly_tool_calls": 1_000_000_000,
    }
    status, org = http_json(
        f"{base}/admin/orgs",
        {"name": "Bench", "tier": "enterprise", "settings": settings},
        method="POST",
        admin=True,
    )
    if status != 201:
        raise SystemExit(f"creating the bench org failed: {status} {org}")
    status, key = http_json(
        f"{base}/admin/orgs/{org['id']}/keys", {"name": "bench", "scopes": ["*"]}, method="POST", admin=True
    )
    if status != 201:
        raise SystemExit(f"creating the bench key failed: {status} {key}")
    return org["id"], key["secret"]


# -- load -------------------------------------------------------------------------------------------

Call = Callable[[], Awaitable[None]]


@dataclass
class Result:
    name: str
    concurrency: str
    calls: int
    seconds: float
    latencies: list[float]
    errors: int = 0

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if len(self.latencies) < 2:
            return self.latencies[0] * 1000 if self.latencies else float("nan")
        return statistics.quantiles(self.latencies, n=1000, method="inclusive")[int(q * 10) - 1] * 1000


async def closed_loop(name: str, fn: Call, calls: int, concurrency: int) -> Result:
    latencies: list[float] = []
    errors = 0
    todo = iter(range(calls))

    async def worker() -> None:
        nonlocal errors
        for _ in todo:
            t0 = time.perf_counter()
            try:
                await fn()
            except Exception:
                errors += 1
                continue
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Result(name, str(concurrency), calls, time.perf_counter() - started, latencies, errors)


async def timed_loop(name: str, fn: Call, seconds: float, concurrency: int) -> Result:
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                await fn()
            except Exception:
                errors += 1
                continue
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return Result(name, f"closed {concurrency}", len(latencies), elapsed, latencies, errors)


async def open_loop(name: str, fn: Call, rate: float, seconds: float) -> Result:
    """Send at a fixed rate whatever the answers do; latency counts from the scheduled send time."""
    latencies: list[float] = []
    errors = 0
    tasks: list[asyncio.Task[None]] = []
    interval = 1.0 / rate
    total = int(rate * seconds)

    async def one(scheduled: float) -> None:
        nonlocal errors
        try:
            await fn()
        except Exception:
            errors += 1
            return
        latencies.append(time.perf_counter() - scheduled)

    started = time.perf_counter()
    for i in range(total):
        scheduled = started + i * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.get_running_loop().create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    return Result(name, f"open {rate:g}/s", len(latencies), elapsed, latencies, errors)


class Targets:
    """The four calls measured: tools/call and tools/list, on the bus and through the gateway."""

    def __init__(
        self, bus: Bus, http: aiohttp.ClientSession, base: str, key: str, org: str, signer: StampSigner
    ):
        self.bus = bus
        self.http = http
        self.url = f"{base}/mcp"
        self.subject = service_subject(org, "echo")
        stamp = signer.mint(org_id=org, tier="enterprise", scopes=["*"], sub="key-bench", service="echo")
        self.bus_headers = {h.STAMP: stamp, h.REQUEST_ID: "bench"}
        self.bus_call = request_body("tools/call", {"name": "echo", "arguments": {"text": TEXT}})
        self.bus_list = request_body("tools/list", None)
        params = {"name": "echo_echo", "arguments": {"text": TEXT}, "_meta": META}
        self.gw_call = msgspec.json.encode(
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
        )
        self.gw_list = msgspec.json.encode(
            {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": META}}
        )
        common = {
            "x-api-key": key,
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            "mcp-protocol-version": MODERN,
        }
        self.call_headers = {**common, "mcp-method": "tools/call", "mcp-name": "echo_echo"}
        self.list_headers = {**common, "mcp-method": "tools/list"}

    async def bus_tools_call(self) -> None:
        msg = await self.bus.request(
            self.subject, self.bus_call, deadline=Deadline.after(10), headers=self.bus_headers
        )
        if b'"error"' in msg.data[:40]:
            raise RuntimeError(msg.data[:200])

    async def bus_tools_list(self) -> None:
        await self.bus.request(
            self.subject, self.bus_list, deadline=Deadline.after(10), headers=self.bus_headers
        )

    async def gw_tools_call(self) -> None:
        async with self.http.post(self.url, data=self.gw_call, headers=self.call_headers) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(resp.status)

    async def gw_steps(self, n: int) -> int:
        """`echo_steps(n)` asking for progress: SSE when the tool reports some, else plain JSON.
        The number of progress events received."""
        params = {"name": "echo_steps", "arguments": {"n": n}, "_meta": {**META, "progressToken": 1}}
        body = msgspec.json.encode({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params})
        headers = {**self.call_headers, "mcp-name": "echo_steps"}
        async with self.http.post(self.url, data=body, headers=headers) as resp:
            data = await resp.read()
            if resp.status != 200 or b'"result"' not in data:
                raise RuntimeError(resp.status, data[-200:])
        return data.count(b"notifications/progress")

    async def gw_tools_list(self) -> None:
        async with self.http.post(self.url, data=self.gw_list, headers=self.list_headers) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(resp.status)


async def measure_progress(
    base: str, nats_url: str, key: str, org: str, signer: StampSigner, calls: int, steps: int
) -> tuple[float, float]:
    """Median ms of a gateway call streaming `steps` progress events (SSE), and of one with none."""
    bus = await connect(nats_url, name="bench-progress")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        t = Targets(bus, http, base, key, org, signer)

        async def one(n: int) -> float:
            t0 = time.perf_counter()
            seen = await t.gw_steps(n)
            elapsed = (time.perf_counter() - t0) * 1000
            if seen != n:
                raise RuntimeError(f"{seen} progress events, expected {n}")
            return elapsed

        for _ in range(30):
            await one(steps)
        none = [await one(0) for _ in range(calls)]
        many = [await one(steps) for _ in range(calls)]
    await bus.close()
    return statistics.median(many), statistics.median(none)


async def run_load(
    args: argparse.Namespace, base: str, nats_url: str, key: str, org: str, signer: StampSigner
) -> list[Result]:
    bus = await connect(nats_url, name="bench-caller")
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    results: list[Result] = []
    async with aiohttp.ClientSession(connector=connector) as http:
        t = Targets(bus, http, base, key, org, signer)
        for fn in (t.bus_tools_call, t.gw_tools_call, t.bus_tools_list, t.gw_tools_list):
            await closed_loop("warmup", fn, 300, 10)
        for c in args.concurrency:
            for name, fn in (
                ("bus tools/call", t.bus_tools_call),
                ("gateway tools/call", t.gw_tools_call),
                ("bus tools/list", t.bus_tools_list),
                ("gateway tools/list", t.gw_tools_list),
            ):
                calls = max(args.calls // 2, 500) if c == 1 else args.calls
                results.append(await closed_loop(name, fn, calls, c))
        for name, fn in (
            ("gateway tools/list", t.gw_tools_list),
            ("bus tools/call", t.bus_tools_call),
            ("gateway tools/call", t.gw_tools_call),
        ):
            results.append(await open_loop(name, fn, args.rate, args.seconds))
            await asyncio.sleep(1)  # let the previous run's stragglers (usage events, flushes) settle
        results.append(
            await timed_loop(
                "gateway tools/call", t.gw_tools_call, args.sustain_seconds, args.sustain_concurrency
            )
        )
        results.append(
            await timed_loop(
                "bus tools/call", t.bus_tools_call, args.sustain_seconds, args.sustain_concurrency
            )
        )
    await bus.close()
    return results


def report(results: list[Result], args: argparse.Namespace) -> dict[str, Any]:
    print(
        f"\n{'path':<20}{'load':>13}{'calls':>8}{'calls/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'err':>5}"
    )
    for r in results:
        print(
            f"{r.name:<20}{r.concurrency:>13}{r.calls:>8}{r.rate:>10.0f}{r.pct(50):>9.2f}{r.pct(95):>9.2f}"
            f"{r.pct(99):>9.2f}{r.errors:>5}"
        )
    by = {(r.name, r.concurrency): r for r in results}
    print("\ngateway vs bus (same call, same load):")
    summary: dict[str, Any] = {
        "replicas": args.replicas,
        "log_level": args.log_level,
        "writers": not args.no_writers,
        "key_audit": not args.no_key_audit,
        "rows": [],
    }
    for c in [str(c) for c in args.concurrency]:
        for what in ("tools/call", "tools/list"):
            gw, bus = by[(f"gateway {what}", c)], by[(f"bus {what}", c)]
            overhead = gw.pct(50) - bus.pct(50)
            print(
                f"  {what:<11} conc {c:>3}: throughput {gw.rate / bus.rate:.2f}x of the bus, "
                f"p50 +{overhead:.2f} ms ({gw.pct(50) / bus.pct(50):.2f}x), p99 {gw.pct(99) / bus.pct(99):.2f}x"
            )
    for r in results:
        summary["rows"].append(
            {
                "path": r.name,
                "load": r.concurrency,
                "calls": r.calls,
                "calls_per_s": round(r.rate, 1),
                "p50_ms": round(r.pct(50), 3),
                "p95_ms": round(r.pct(95), 3),
                "p99_ms": round(r.pct(99), 3),
                "errors": r.errors,
            }
        )
    one = "1" if "1" in [str(c) for c in args.concurrency] else str(args.concurrency[0])
    overhead = by[("gateway tools/call", one)].pct(50) - by[("bus tools/call", one)].pct(50)
    open_label = f"open {args.rate:g}/s"
    sustain = by[("gateway tools/call", f"closed {args.sustain_concurrency}")]
    print("\ntargets:")
    print(f"  gateway overhead over the bus at p50 (conc {one}): {overhead:.2f} ms   (target <= 1 ms)")
    print(
        f"  tools/list p95 at {args.rate:g}/s: {by[('gateway tools/list', open_label)].pct(95):.2f} ms   (target < 25 ms)"
    )
    print(
        f"  tools/call p95 at {args.rate:g}/s: {by[('gateway tools/call', open_label)].pct(95):.2f} ms   (target < 50 ms)"
    )
    print(f"  sustained tools/call through the gateway: {sustain.rate:.0f}/s   (target >= 1000/s)")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--replicas", type=int, default=1, help="echo service replicas (processes)")
    parser.add_argument("--calls", type=int, default=2000, help="calls per closed-loop row")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--rate", type=float, default=200.0, help="open-loop calls per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="open-loop duration")
    parser.add_argument("--sustain-seconds", type=float, default=15.0)
    parser.add_argument("--sustain-concurrency", type=int, default=64)
    parser.add_argument(
        "--log-level", default="INFO", help="the gateway's LOG_LEVEL (INFO logs every request)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--no-writers",
        action="store_true",
        help="run the gateway without the control plane's usage/audit writers (see serve_gateway)",
    )
    parser.add_argument(
        "--no-key-audit",
        action="store_true",
        help="diagnosis: the gateway skips note_key_use (no last_used_at, no per-request audit event)",
    )
    parser.add_argument("--progress", type=int, default=50, help="progress messages per streamed call")
    parser.add_argument("--progress-calls", type=int, default=100, help="calls per streaming row")
    parser.add_argument("--progress-only", action="store_true", help="measure only the streaming path")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-gateway", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_kit()
        return
    if args.serve_gateway:
        serve_gateway("writers" in args.serve_gateway, "no-key-audit" not in args.serve_gateway)
        return

    logs = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    nats = LocalNatsServer()
    mongo = None if os.environ.get("MONGODB_URL") else LocalMongoServer()
    mongo_url = mongo.url if mongo is not None else os.environ["MONGODB_URL"]
    pem = generate_signing_key_pem()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs += start_services(nats.url, public_key_pem(pem), args.replicas, logs)
        gateway = start_gateway(
            nats.url,
            pem,
            port,
            args.log_level,
            logs,
            writers=not args.no_writers,
            mongo_url=mongo_url,
            key_audit=not args.no_key_audit,
        )
        procs.append(gateway)
        wait_ready(base, gateway)
        org, key = create_tenant(base)
        print(
            f"nats {nats.url}, gateway {base}, {args.replicas} echo replica(s), gateway LOG_LEVEL={args.log_level}, "
            f"usage/audit writers {'off' if args.no_writers else 'on (embedded SecantusDB unless MONGODB_URL)'}, "
            f"key-use audit {'off' if args.no_key_audit else 'on'}, "
            f"{os.cpu_count()} CPUs; logs in {logs}"
        )
        signer = StampSigner(pem, ttl_s=3600)
        summary: dict[str, Any] = {}
        if not args.progress_only:
            summary = report(asyncio.run(run_load(args, base, nats.url, key, org, signer)), args)
        if args.progress:
            many, none = asyncio.run(
                measure_progress(base, nats.url, key, org, signer, args.progress_calls, args.progress)
            )
            per_us = (many - none) / args.progress * 1000
            print(
                f"\nstreaming through the gateway (SSE): a call with {args.progress} progress messages "
                f"{many:.2f} ms (median), without {none:.2f} ms: {per_us:.0f} us per progress message"
            )
            summary["streaming"] = {
                "progress": args.progress,
                "many_ms": many,
                "none_ms": none,
                "per_us": per_us,
            }
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2) + "\n")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        nats.close()
        if mongo is not None:
            mongo.close()


if __name__ == "__main__":
    main()
