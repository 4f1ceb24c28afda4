"""mcp-llm benchmark: the latency mcp-llm adds over calling litellm directly, against the same
local OpenAI-compatible fake provider (an aiohttp server in this process, answering at once).

Rows: litellm's Router called directly (one deployment) vs `llm_chat` through the bus (the
service on a ServiceHarness: stamped JSON-RPC over a local nats-server, selection, org config
and usage writes on the store) vs `llm_chat` through the gateway (Streamable HTTP, plain JSON
answers, raw aiohttp; the gateway in its own process as tools/bench/bench_gateway.py runs it,
usage/audit writers on, an enterprise-tier org), at concurrency 1 and 16: p50/p99 latency and
calls/s; then a cache hit (temperature 0, the same request again) on both paths. The service,
the fake and the load generator share this process. The store is MONGODB_URL when set, else a
SecantusDB process of the benchmark's own.

    .venv/bin/python tools/bench/bench_llm.py [--calls 300] [--concurrency 1 16] [--no-gateway]
        [--config-ttl-s 5]

Measured 2026-12-02 (`--calls 200`, 2 shared cores, load 2.5-3, two runs: ranges):

| path | conc | p50 ms | p99 ms | calls/s |
|---|---|---|---|---|
| litellm Router, direct | 1 | 4.8-5.0 | 6-9 | 200 |
| llm_chat through the bus | 1 | 11.6-12.1 | 34-37 | 76-80 |
| llm_chat through the gateway | 1 | 15.0-15.7 | 48-63 | 54-61 |
| litellm Router, direct | 16 | 106-113 | 122-127 | 140-150 |
| llm_chat through the bus | 16 | 146-154 | 380-389 | 94-95 |
| llm_chat through the gateway | 16 | 183-259 | 290-522 | 57-84 |
| cache hit, bus | 1 | 3.8-4.1 | 6-8 | 230-257 |
| cache hit, gateway | 1 | 5.2-6.5 | 19-37 | 104-157 |

`--config-ttl-s 0` (the org's configuration read at every call) vs 5, alternated twice, bus:
p50 conc 1 14.5-14.8 vs 12.2-13.4 ms; conc 16 178-209 vs 150-169 ms; cache hit 4.8-5.2 vs
4.1-4.3 ms (services/mcp-llm/README.md "Cost").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from bench_gateway import META, MODERN, create_tenant, start_gateway, wait_ready

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from litellm import Router

from mcpmesh.dev.mongoproc import LocalMongoServer
from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.dev.runner import free_port
from mcpmesh.llm import LlmSettings, build_service
from mcpmesh.llm.app import quiet_litellm
from mcpmesh.llm.testing import FakeProvider
from mcpmesh.secrets import new_master_key_entry
from mcpmesh.service import ServiceSettings
from mcpmesh.service.testing import ServiceHarness
from mcpmesh.telemetry.logs import configure_logging

MESSAGES = [{"role": "user", "content": "Summarize the quarterly report in one sentence."}]
ORG = "org-bench-llm"


async def measure(
    call: Callable[[], Awaitable[object]], calls: int, concurrency: int
) -> tuple[float, list[float]]:
    for _ in range(20):  # warm up
        await call()
    latencies: list[float] = []
    queue = iter(range(calls))

    async def worker() -> None:
        for _ in queue:
            t0 = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return calls / (time.perf_counter() - started), latencies


def row(name: str, concurrency: int, rate: float, latencies: list[float]) -> str:
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"{name:<28}{concurrency:>6}{statistics.median(ms):>10.2f}{p99:>10.2f}{rate:>10.0f}"


class GatewayChat:
    """`llm_chat` through the gateway: one stateless Streamable HTTP POST per call."""

    def __init__(self, http: aiohttp.ClientSession, base: str, key: str) -> None:
        self.http, self.url = http, f"{base}/mcp"
        self.headers = {
            "x-api-key": key,
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            "mcp-protocol-version": MODERN,
            "mcp-method": "tools/call",
            "mcp-name": "llm_chat",
        }

    async def __call__(self, arguments: dict[str, Any]) -> None:
        params = {"name": "llm_chat", "arguments": arguments, "_meta": META}
        body = msgspec.json.encode({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params})
        async with self.http.post(self.url, data=body, headers=self.headers) as resp:
            data = await resp.read()
        if resp.status != 200 or b'"isError":false' not in data:
            raise RuntimeError(resp.status, data[:300])


async def gateway_rows(
    harness: ServiceHarness, nats_url: str, mongo_url: str, calls: int, levels: list[int]
) -> list[str]:
    """The gateway process in front of the service already on the bus (stamps by the same key)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    logs = Path(tempfile.mkdtemp(prefix="bench-llm-"))
    gateway = start_gateway(
        nats_url, harness.signing_key_pem, port, "INFO", logs, writers=True, mongo_url=mongo_url
    )
    rows: list[str] = []
    try:
        await asyncio.to_thread(wait_ready, base, gateway)
        org, key = await asyncio.to_thread(create_tenant, base)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            chat = GatewayChat(http, base, key)
            for level in levels:
                rate, lat = await measure(lambda: chat({"messages": MESSAGES}), calls, level)
                rows.append(row("llm_chat through the gateway", level, rate, lat))
            cached = {"messages": MESSAGES, "temperature": 0}
            rate, lat = await measure(lambda: chat(cached), calls, 1)
            rows.append(row("gateway, cache hit", 1, rate, lat))
        await harness.service.store.drop_tenant(org)
    finally:
        gateway.terminate()
        gateway.wait(timeout=10)
    return rows


async def run(
    nats_url: str, mongo_url: str, calls: int, levels: list[int], gateway: bool, config_ttl_s: float
) -> list[str]:
    rows: list[str] = []
    async with FakeProvider() as fake:
        direct = Router(
            model_list=[
                {
                    "model_name": "big",
                    "litellm_params": {"model": "openai/big", "api_base": fake.url, "api_key": "k"},
                }
            ]
        )
        settings = LlmSettings(
            providers=[{"name": "fake", "api_base": fake.url, "models": [{"name": "big"}]}],
            aliases={"default": "big"},
            allow_private_endpoints=True,
            config_ttl_s=config_ttl_s,
        )
        database = f"bench_llm_{uuid.uuid4().hex[:8]}"
        store = ServiceSettings(
            mongodb_url=mongo_url, mongodb_database=database, secrets_keys=new_master_key_entry()
        )
        async with ServiceHarness(build_service(settings), nats_url, settings=store) as harness:
            stamp = harness.stamp(ORG, ["llm:read"])
            for level in levels:
                rate, lat = await measure(
                    lambda: direct.acompletion(model="big", messages=MESSAGES), calls, level
                )
                rows.append(row("litellm Router, direct", level, rate, lat))
                rate, lat = await measure(
                    lambda: harness.call_tool(ORG, "chat", {"messages": MESSAGES}, stamp=stamp), calls, level
                )
                rows.append(row("llm_chat through the bus", level, rate, lat))
            cached = {"messages": MESSAGES, "temperature": 0}
            await harness.call_tool(ORG, "chat", cached, stamp=stamp)
            rate, lat = await measure(lambda: harness.call_tool(ORG, "chat", cached, stamp=stamp), calls, 1)
            rows.append(row("llm_chat, cache hit", 1, rate, lat))
            if gateway:
                rows += await gateway_rows(harness, nats_url, mongo_url, calls, levels)
            db = harness.service.store
            await db.drop_tenant(ORG)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--no-gateway", action="store_true", help="skip the rows through the gateway")
    parser.add_argument(
        "--config-ttl-s",
        type=float,
        default=5.0,
        help="LLM_CONFIG_TTL_S (0: the org's config read every call)",
    )
    args = parser.parse_args()
    configure_logging("bench", json=False, level="WARNING")
    quiet_litellm()
    nats = LocalNatsServer()
    mongo = None if os.environ.get("MONGODB_URL") else LocalMongoServer()
    mongo_url = os.environ.get("MONGODB_URL") or mongo.url  # type: ignore[union-attr]
    try:
        rows = asyncio.run(
            run(nats.url, mongo_url, args.calls, args.concurrency, not args.no_gateway, args.config_ttl_s)
        )
    finally:
        nats.close()
        if mongo is not None:
            mongo.close()
    header = f"{'path':<28}{'conc':>6}{'p50 ms':>10}{'p99 ms':>10}{'calls/s':>10}"
    print(f"\nmcp-llm vs litellm direct, {args.calls} calls per row (fake provider in process)\n")
    print(header)
    print("-" * len(header))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
