"""Bus benchmark: bare NATS request/reply echo vs an MCP tools/call served through the kit.

Same payload (the JSON-RPC tools/call body), same layout: one nats-server, the responder
in its own process, the caller here. Reports calls/s and p50/p99 for both and the ratio,
then the streaming path: a kit tool reporting N progress notifications, relayed as frames
to the caller (`exchange(on_progress=...)`), against the same call with none: the added
latency per progress message.

    .venv/bin/python tools/bench/bench_bus.py [--calls 3000] [--concurrency 1 16 64]

Measured 2026-12-02 (`--calls 2000`, three runs of the `clients` branch interleaved with three
of main before it, on 2 CPUs other jobs kept busy, load 4-5; medians of the three, ranges in
brackets). The CPU the responder spends per call is the steadiest figure (throughput and
latency move with the other jobs):

| responder | conc | calls/s | p50 ms | responder CPU us/call |
|---|---|---|---|---|
| bare NATS echo | 1 | 2560-3080 | 0.25-0.38 | 95-123 |
| bare NATS echo | 64 | 10000-13200 | 4.1-4.7 | 27-32 |
| kit, with cancellation (this branch) | 1 | 690-910 | 0.98-1.06 | 691 (668-764) |
| kit, with cancellation (this branch) | 16 | 1650-2110 | 7.3-8.0 | 432 (423-455) |
| kit, with cancellation (this branch) | 64 | 1090-1800 | 31-57 | 423 (400-441) |
| kit, before (main) | 1 | 770-880 | 1.0-1.1 | 755 (686-755) |
| kit, before (main) | 16 | 1570-1840 | 7.2-8.2 | 441 (400-468) |
| kit, before (main) | 64 | 1200-1980 | 30-52 | 436 (414-441) |

So a tools/call through the kit costs its replica ~400 us of CPU more than a bare NATS echo
(~420 vs ~30 at concurrency 16-64; ~0.65 ms more latency at concurrency 1), unchanged by
cancellation (its registry costs ~1 us a call; within the run-to-run noise). Throughput at
concurrency 64 was 1670 calls/s when libs/telemetry last reported it; 1100-2000 here.
Streaming: 31-43 us per progress message relayed (table in bench_gateway.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from mcp.server.mcpserver import Context

from mcpmesh.bus import Deadline, connect
from mcpmesh.bus.mcp import exchange, request_body
from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.tenancy.stamp import StampSigner, generate_signing_key_pem, public_key_pem

ORG = "org-bench"
BODY = request_body("tools/call", {"name": "echo", "arguments": {"text": "x" * 200}})


def serve_bare(nats_url: str) -> None:
    async def main() -> None:
        bus = await connect(nats_url, name="bare-echo")

        async def echo(msg: object) -> None:
            await msg.respond(msg.data)  # type: ignore[attr-defined]

        await bus.nc.subscribe("mcp.*.echo", queue="echo", cb=echo)
        await asyncio.Event().wait()

    asyncio.run(main())


def serve_kit() -> None:
    from mcpmesh.service import MeshService, run

    service = MeshService("echo")

    @service.tool()
    async def echo(text: str) -> str:
        return text

    @service.tool()
    async def steps(n: int, ctx: Context) -> str:
        for i in range(n):
            await ctx.report_progress(i + 1, n)
        return "done"

    run(service, [])


async def measure(nats_url: str, stamp: str, calls: int, concurrency: int) -> tuple[float, list[float]]:
    bus = await connect(nats_url, name="bench-caller")
    headers = {"Mcp-Stamp": stamp, "Mcp-Request-Id": "bench"}
    latencies: list[float] = []
    queue = iter(range(calls))

    async def worker() -> None:
        for _ in queue:
            t0 = time.perf_counter()
            await bus.request("mcp.org-bench.echo", BODY, deadline=Deadline.after(10), headers=headers)
            latencies.append(time.perf_counter() - t0)

    for _ in range(200):  # warm up
        await bus.request("mcp.org-bench.echo", BODY, deadline=Deadline.after(10), headers=headers)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await bus.close()
    return calls / elapsed, latencies


async def measure_progress(nats_url: str, stamp: str, calls: int, steps: int) -> tuple[float, float]:
    """Median ms of one call reporting `steps` progress messages (all relayed), and of one with none."""
    bus = await connect(nats_url, name="bench-progress")
    seen = 0

    async def relay(_notification: bytes) -> None:
        nonlocal seen
        seen += 1

    async def one(n: int) -> float:
        body = request_body(
            "tools/call", {"name": "steps", "arguments": {"n": n}, "_meta": {"progressToken": 1}}
        )
        t0 = time.perf_counter()
        await exchange(
            bus,
            org_id=ORG,
            service="echo",
            body=body,
            stamp=stamp,
            deadline=Deadline.after(30),
            on_progress=relay,
        )
        return (time.perf_counter() - t0) * 1000

    for _ in range(50):
        await one(steps)
    none = [await one(0) for _ in range(calls)]
    seen = 0
    many = [await one(steps) for _ in range(calls)]
    await bus.close()
    assert seen == steps * calls, (seen, steps * calls)
    return statistics.median(many), statistics.median(none)


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used: the responder's cost, whatever else
    the machine is doing (throughput and latency are shared with every other process)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000


def start_responder(kind: str, nats_url: str, public_pem: str) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        NATS_URL=nats_url,
        MCPMESH_STAMP_PUBLIC_KEY=public_pem,
        LOG_LEVEL="WARNING",
        MCPMESH_ENV="bench",
    )
    return subprocess.Popen([sys.executable, str(Path(__file__)), "--serve", kind, nats_url], env=env)


async def wait_ready(nats_url: str, stamp: str) -> None:
    bus = await connect(nats_url, name="probe")
    try:
        await bus.request(
            "mcp.org-bench.echo", BODY, deadline=Deadline.after(30), headers={"Mcp-Stamp": stamp}
        )
    finally:
        await bus.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--progress", type=int, default=50, help="progress messages per streamed call")
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "NATS_URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        kind, url = args.serve
        serve_bare(url) if kind == "bare" else serve_kit()
        return

    nats = LocalNatsServer()
    pem = generate_signing_key_pem()
    stamp = StampSigner(pem, ttl_s=3600).mint(
        org_id=ORG, tier="pro", scopes=["*"], sub="key-bench", service="echo"
    )
    rows = []
    streamed: tuple[float, float] | None = None
    try:
        for kind in ("bare", "kit"):
            proc = start_responder(kind, nats.url, public_key_pem(pem))
            try:
                asyncio.run(wait_ready(nats.url, stamp))
                for c in args.concurrency:
                    before = cpu_s(proc.pid)
                    rate, lat = asyncio.run(measure(nats.url, stamp, args.calls, c))
                    # warm-up calls included: (calls + 200) served while measured
                    cpu_us = (cpu_s(proc.pid) - before) / (args.calls + 200) * 1e6
                    rows.append((kind, c, rate, pct(lat, 50), pct(lat, 99), cpu_us))
                if kind == "kit" and args.progress:
                    streamed = asyncio.run(
                        measure_progress(nats.url, stamp, max(args.calls // 20, 20), args.progress)
                    )
            finally:
                proc.terminate()
                proc.wait()
    finally:
        nats.close()

    print(f"{'responder':<10}{'conc':>6}{'calls/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'cpu us/call':>13}")
    for kind, c, rate, p50, p99, cpu_us in rows:
        print(f"{kind:<10}{c:>6}{rate:>10.0f}{p50:>9.2f}{p99:>9.2f}{cpu_us:>13.0f}")
    print("\nkit / bare at the same concurrency (target: at most 2x):")
    bare = {r[1]: r for r in rows if r[0] == "bare"}
    for kind, c, rate, p50, p99, _cpu in rows:
        if kind == "kit":
            b = bare[c]
            print(
                f"  conc {c:>3}: throughput {b[2] / rate:.2f}x slower, p50 {p50 / b[3]:.2f}x, p99 {p99 / b[4]:.2f}x"
            )
    if streamed is not None:
        many, none = streamed
        print(
            f"\nstreaming: a call with {args.progress} progress messages relayed {many:.2f} ms (median), "
            f"without {none:.2f} ms: {(many - none) / args.progress * 1000:.0f} us per progress message"
        )


if __name__ == "__main__":
    main()
