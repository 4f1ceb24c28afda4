"""mcp-context benchmark: appends/s and windowed gets/s through the bus, for contexts of 10, 1,000
and 10,000 entries, and how many entries each windowed get reads.

The service runs in this process on a ServiceHarness (the gateway's view: every call is a
stamped JSON-RPC request over a local nats-server). The store is MONGODB_URL when set
(`--store url`), else the embedded store of `./mesh up`: a SecantusDB server process of
the benchmark's own in a temporary directory (`--store embedded`, the default).

Two layouts:
  shared   the three contexts live in one org, i.e. the same `<org>__entries` collection:
           only the context size differs between rows.
  per-org  each context in its own org: the collection grows with the context. The queries
           are (ctx_id, seq) / (ctx_id, tok_start) index ranges, so the collection size
           should not matter.
The "read n" / "read tok" columns count the entry documents the service fetched per windowed get;
"whole ms" is the store-level time to fetch a whole context (what a windowed get avoids).

    .venv/bin/python tools/bench/bench_context.py [--store embedded|url] [--sizes 10 1000 10000]
        [--ops 200] [--layout shared per-org]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mcpmesh.context import ContextSettings, app_of, build_service
from mcpmesh.dev.mongoproc import LocalMongoServer
from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.service import ServiceSettings
from mcpmesh.service.testing import ServiceHarness
from mcpmesh.store import TenantStore, connect_database
from mcpmesh.telemetry.logs import configure_logging

TEXT = "The customer asked about invoice {i}; the assistant explained the billing cycle and next steps."


@dataclass
class Row:
    layout: str
    size: int
    fill_s: float
    append_rate: float
    append_p50: float
    append_conc_rate: float
    last_n_rate: float
    last_n_p50: float
    last_tokens_rate: float
    last_tokens_p50: float
    read_last_n: float
    read_last_tokens: float
    whole_read_ms: float


async def timed(ops: int, call: Callable[[int], Awaitable[Any]], concurrency: int = 1) -> tuple[float, float]:
    """(ops/s, p50 ms) of `ops` calls, `concurrency` at a time."""
    latencies: list[float] = []
    queue = iter(range(ops))

    async def worker() -> None:
        for i in queue:
            t0 = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return ops / elapsed, statistics.median(latencies) * 1000


async def fill(harness: ServiceHarness, org: str, ctx_id: str, size: int, stamp: str) -> float:
    started = time.perf_counter()
    for start in range(0, size, 500):
        batch = [
            {"role": "user" if i % 2 == 0 else "assistant", "content": TEXT.format(i=i)}
            for i in range(start, min(size, start + 500))
        ]
        await harness.call_tool(org, "append", {"ctx_id": ctx_id, "entries": batch}, stamp=stamp)
    return time.perf_counter() - started


async def whole_context_read_ms(store: TenantStore, ctx_id: str, repeat: int = 5) -> float:
    """The store-level cost of what the design avoids: fetching every entry of the context."""
    entries = await store.collection("entries")
    started = time.perf_counter()
    for _ in range(repeat):
        docs = await entries.find({"ctx_id": ctx_id}).sort("seq", 1).to_list(None)
        assert docs
    return (time.perf_counter() - started) / repeat * 1000


async def run_layout(
    nats_url: str,
    mongo_url: str,
    layout: str,
    sizes: list[int],
    ops: int,
    window: int,
    window_tokens: int,
    concurrency: int,
) -> list[Row]:
    database = f"bench_context_{uuid.uuid4().hex[:8]}"
    service = build_service(ContextSettings(sweep_interval_s=0))
    rows: list[Row] = []
    settings = ServiceSettings(mongodb_url=mongo_url, mongodb_database=database)
    harness = ServiceHarness(service, nats_url, settings=settings)
    minted: dict[str, tuple[float, str]] = {}

    def stamp(org: str) -> str:
        """An enterprise-tier stamp (1M tokens per context), re-minted before it can expire."""
        at, token = minted.get(org, (0.0, ""))
        if time.monotonic() - at > 20:
            token = harness.stamp(org, ["context:*"], tier="enterprise")
            minted[org] = (time.monotonic(), token)
        return token

    async with harness:
        app = app_of(service)  # the service's lifespan state, while it runs
        contexts: dict[int, tuple[str, str, float]] = {}
        for size in sizes:  # build every context first: in `shared`, all rows see the same collection
            org = "org-bench" if layout == "shared" else f"org-bench-{size}"
            await harness.call_tool(org, "list", {}, stamp=stamp(org))  # warm up
            created = await harness.call_tool(org, "create", {"title": f"{size} entries"}, stamp=stamp(org))
            contexts[size] = (
                org,
                created["ctx_id"],
                await fill(harness, org, created["ctx_id"], size, stamp(org)),
            )
        for size in sizes:
            org, ctx_id, fill_s = contexts[size]

            def get(args: dict[str, Any], org: str = org) -> Callable[[int], Awaitable[Any]]:
                return lambda _i: harness.call_tool(org, "get", args, stamp=stamp(org))

            before = app.stats["entries_read"]
            last_n = await timed(ops, get({"ctx_id": ctx_id, "last_n": window}))
            middle = app.stats["entries_read"]
            last_tokens = await timed(ops, get({"ctx_id": ctx_id, "last_n_tokens": window_tokens}))
            read_last_n = (middle - before) / ops
            read_last_tokens = (app.stats["entries_read"] - middle) / ops

            def append(i: int, org: str = org, ctx_id: str = ctx_id) -> Awaitable[Any]:
                args = {"ctx_id": ctx_id, "role": "user", "content": TEXT.format(i=i)}
                return harness.call_tool(org, "append", args, stamp=stamp(org))

            whole_read_ms = await whole_context_read_ms(service.store.for_tenant(org), ctx_id)
            appends = await timed(ops, append)
            appends_conc = await timed(ops, append, concurrency)
            rows.append(
                Row(
                    layout,
                    size,
                    fill_s,
                    appends[0],
                    appends[1],
                    appends_conc[0],
                    last_n[0],
                    last_n[1],
                    last_tokens[0],
                    last_tokens[1],
                    read_last_n,
                    read_last_tokens,
                    whole_read_ms,
                )
            )
    db = connect_database(mongo_url, database)
    await db.client.drop_database(database)
    db.client.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 1_000, 10_000])
    parser.add_argument("--ops", type=int, default=200, help="calls per measurement")
    parser.add_argument("--window", type=int, default=20, help="last_n of the windowed get")
    parser.add_argument("--window-tokens", type=int, default=500, help="last_n_tokens of the windowed get")
    parser.add_argument(
        "--concurrency", type=int, default=16, help="appends in flight for the concurrent run"
    )
    parser.add_argument("--layout", nargs="+", choices=["shared", "per-org"], default=["shared", "per-org"])
    parser.add_argument(
        "--store",
        choices=["embedded", "url"],
        default="url" if os.environ.get("MONGODB_URL") else "embedded",
        help="a SecantusDB process of the benchmark's own, or the server at MONGODB_URL",
    )
    args = parser.parse_args()
    configure_logging("bench", json=False, level="WARNING")
    if args.store == "url" and not os.environ.get("MONGODB_URL"):
        parser.error("--store url needs MONGODB_URL")

    nats = LocalNatsServer()
    mongo = LocalMongoServer() if args.store == "embedded" else None
    mongo_url = mongo.url if mongo is not None else os.environ["MONGODB_URL"]
    try:
        rows = [
            row
            for layout in args.layout
            for row in asyncio.run(
                run_layout(
                    nats.url,
                    mongo_url,
                    layout,
                    args.sizes,
                    args.ops,
                    args.window,
                    args.window_tokens,
                    args.concurrency,
                )
            )
        ]
    finally:
        nats.close()
        if mongo is not None:
            mongo.close()

    store = "embedded SecantusDB" if mongo is not None else "MONGODB_URL"
    print(
        f"\nmcp-context through the bus on {store} ({args.ops} calls per cell; "
        f"windows: last_n={args.window}, "
        f"last_n_tokens={args.window_tokens}; concurrent appends: {args.concurrency} in flight)\n"
    )
    header = (
        f"{'layout':<8}{'entries':>8}{'fill s':>8}{'append/s':>10}{'p50 ms':>8}{'conc/s':>8}"
        f"{'last_n/s':>10}{'p50 ms':>8}{'tokens/s':>10}{'p50 ms':>8}{'read n':>8}{'read tok':>9}{'whole ms':>10}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.layout:<8}{r.size:>8}{r.fill_s:>8.2f}{r.append_rate:>10.0f}{r.append_p50:>8.2f}"
            f"{r.append_conc_rate:>8.0f}{r.last_n_rate:>10.0f}{r.last_n_p50:>8.2f}{r.last_tokens_rate:>10.0f}"
            f"{r.last_tokens_p50:>8.2f}{r.read_last_n:>8.1f}{r.read_last_tokens:>9.1f}{r.whole_read_ms:>10.1f}"
        )
    for layout in args.layout:
        mine = [r for r in rows if r.layout == layout]
        if len(mine) >= 2:
            small, large = mine[0], mine[-1]
            print(
                f"\n{layout}: windowed get p50 at {large.size} vs {small.size} entries: "
                f"last_n {large.last_n_p50 / small.last_n_p50:.2f}x, "
                f"last_n_tokens {large.last_tokens_p50 / small.last_tokens_p50:.2f}x"
            )


if __name__ == "__main__":
    main()
