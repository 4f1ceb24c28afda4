"""Overload benchmark: open-loop load far above capacity against `./mesh up`.

Starts the platform exactly as a developer does (`python -m mcpmesh.dev.runner`, i.e.
`./mesh up`: nats-server, every service and the gateway as separate processes on 127.0.0.1,
in a temporary state directory), creates two orgs through the admin API (a "flood" org
with limits high enough not to interfere and a "quiet" org) and a context to read, then
for each rate offers `context_get` (last 5 entries) open loop for `--seconds`: each call
is sent at its scheduled time whatever the answers do, from `--senders` processes over
raw keep-alive HTTP/1.1 connections (cheap enough to offer thousands of calls a second
from Python). At most `--connections` are open at once: a call due while every one of them
waits for an answer is counted as "not sent" (a gateway that stops answering must not use up
the machine's ports). Meanwhile the quiet org sends `--quiet-rate` calls/s of the same tool.

Reports per rate: offered/s, admitted/s (200), refused/s (503, and whether each carried
Retry-After), other failures, p50/p99 of admitted calls (from the scheduled send time, so
a stall in the load generator is not hidden; `send_lag` says how late it was), p99 of
refusals, the quiet org's success rate and p99, gateway RSS before / peak during / after
`--idle-s` of idle, the CPU seconds each process used, and whether the gateway then serves
`--check-calls` calls normally. `--timeline` adds each second's figures.

    .venv/bin/python tools/bench/bench_overload.py [--rates 500 1500 3000] [--seconds 20]
        [--senders 2] [--idle-s 20] [--connections 2000] [--env NAME=VALUE] [--json out.json]

Everything shares this machine's CPUs (the load generator included): say what else ran.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODERN = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "bench-overload", "version": "1"},
}
CLIENT_TIMEOUT_S = 65.0
#: One call: (scheduled offset s, latency s from the scheduled time, HTTP status (0: failed,
#: -1: not sent), Retry-After present, how late the generator sent it s).
Sample = tuple[
    float, float, int, bool, float
]  # longer than the gateway's call deadline: its own answer is measured


# -- the platform ---------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_mesh(
    state: Path, env_extra: dict[str, str], *runner_args: str
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """`./mesh up [runner_args]` in `state`; returns the runner and the facts it wrote (`dev.json`)."""
    env = dict(os.environ, MCPMESH_STATE_DIR=str(state), **env_extra)
    env.pop("NATS_URL", None)
    log = (state / "runner.log").open("ab")
    runner = subprocess.Popen(
        [sys.executable, "-m", "mcpmesh.dev.runner", "--gateway-port", str(free_port()), *runner_args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    facts_file = state / "dev.json"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if runner.poll() is not None:
            raise SystemExit(f"./mesh up exited (code {runner.returncode}): see {state / 'runner.log'}")
        if facts_file.exists():
            try:
                facts: dict[str, Any] = json.loads(facts_file.read_text())
                if "mcp_url" in facts:
                    return runner, facts
            except json.JSONDecodeError:
                pass
        time.sleep(0.25)
    raise SystemExit(f"./mesh up did not come up in 180 s: see {state}")


def stop_mesh(runner: subprocess.Popen[bytes]) -> None:
    if runner.poll() is None:
        runner.send_signal(signal.SIGTERM)
        try:
            runner.wait(timeout=30)
        except subprocess.TimeoutExpired:
            runner.kill()


def admin(base: str, admin_key: str, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        base + path,
        data=data,
        method=method,
        headers={"content-type": "application/json", "authorization": f"Bearer {admin_key}"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"null")


def make_org(base: str, admin_key: str, name: str) -> tuple[str, str]:
    """An org whose rate limits and quota stay out of the way, and a key with every scope."""
    settings = {
        "rate_limits": {"requests_per_minute": 100_000_000, "requests_per_day": 1_000_000_000},
        "monthly_tool_calls": 1_000_000_000,
    }
    org = admin(
        base, admin_key, "POST", "/admin/orgs", {"name": name, "tier": "enterprise", "settings": settings}
    )
    key = admin(base, admin_key, "POST", f"/admin/orgs/{org['id']}/keys", {"name": "bench", "scopes": ["*"]})
    return org["id"], key["secret"]


def tool_call(mcp_url: str, key: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments, "_meta": META},
    }
    req = urllib.request.Request(
        mcp_url, data=json.dumps(body).encode(), method="POST", headers=call_headers(key, name)
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        reply: dict[str, Any] = json.loads(resp.read())
    return reply


def call_headers(key: str, name: str) -> dict[str, str]:
    return {
        "x-api-key": key,
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": MODERN,
        "mcp-method": "tools/call",
        "mcp-name": name,
    }


def create_context(mcp_url: str, key: str) -> str:
    entries = [{"role": "user", "content": f"message {i} about the billing cycle"} for i in range(20)]
    reply = tool_call(mcp_url, key, "context_create", {"title": "bench", "entries": entries})
    result = reply.get("result") or {}
    ctx = result.get("structuredContent") or json.loads(result["content"][0]["text"])
    return str(ctx["ctx_id"])


def raw_request(url: str, key: str, ctx_id: str) -> tuple[str, int, bytes]:
    """(host, port, the bytes of one `context_get` request)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "context_get", "arguments": {"ctx_id": ctx_id, "last_n": 5}, "_meta": META},
        }
    ).encode()
    head = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in call_headers(key, "context_get").items()]
    return parts.hostname or "127.0.0.1", parts.port or 80, ("\r\n".join(head) + "\r\n\r\n").encode() + body


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def gateway_counters(base: str) -> dict[str, float]:
    """Full (generation 2) collections and admission refusals by reason so far, from /metrics."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    out = {"gc_full": 0.0}
    for line in text.splitlines():
        if line.startswith('python_gc_collections_total{generation="2"}'):
            out["gc_full"] = float(line.rsplit(" ", 1)[1])
        elif line.startswith('mcpmesh_admission_refused_total{reason="'):
            reason = line.split('"')[1]
            out[f"refused_{reason}"] = float(line.rsplit(" ", 1)[1])
    return out


def cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


# -- the load generator ---------------------------------------------------------------------------


class Saturated(Exception):
    """Every connection the generator may open is waiting for an answer."""


class _Pool:
    """Keep-alive HTTP/1.1 connections; a call takes an idle one or opens a new one, up to
    `limit` open at once (a server that stops answering must not exhaust the machine's ports)."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port, self.limit = host, port, limit
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.open = 0

    async def call(self, request: bytes) -> tuple[int, bool]:
        """(HTTP status, Retry-After present); raises on a broken connection."""
        if self.idle:
            conn = self.idle.pop()
        elif self.open >= self.limit:
            raise Saturated
        else:
            self.open += 1
            try:
                conn = await asyncio.open_connection(self.host, self.port)
            except BaseException:
                self.open -= 1
                raise
        reader, writer = conn
        try:
            writer.write(request)
            status_line = await reader.readline()
            if not status_line:
                raise ConnectionError("closed")
            status = int(status_line.split()[1])
            length, retry_after, close = 0, False, False
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                lname = name.strip().lower()
                if lname == b"content-length":
                    length = int(value)
                elif lname == b"retry-after":
                    retry_after = True
                elif lname == b"connection" and value.strip().lower() == b"close":
                    close = True
            if length:
                await reader.readexactly(length)
        except BaseException:
            writer.close()
            self.open -= 1
            raise
        if close:
            writer.close()
            self.open -= 1
        else:
            self.idle.append(conn)
        return status, retry_after


async def _open_loop(
    host: str, port: int, request: bytes, rate: float, seconds: float, start_at: float, connections: int
) -> list[Sample]:
    """A `Sample` per call."""
    pool = _Pool(host, port, connections)
    out: list[Sample] = []
    tasks: set[asyncio.Task[None]] = set()

    async def one(scheduled: float) -> None:
        lag = time.time() - scheduled  # how late the generator itself is (its CPU share)
        try:
            status, retry_after = await asyncio.wait_for(pool.call(request), CLIENT_TIMEOUT_S)
        except Saturated:
            status, retry_after = -1, False
        except (OSError, ConnectionError, asyncio.IncompleteReadError, TimeoutError, ValueError, IndexError):
            status, retry_after = 0, False
        out.append((scheduled - start_at, time.time() - scheduled, status, retry_after, lag))

    total = int(rate * seconds)
    interval = 1.0 / rate
    loop = asyncio.get_running_loop()
    delay = start_at - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
    for i in range(total):
        scheduled = start_at + i * interval
        delay = scheduled - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = loop.create_task(one(scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.wait(set(tasks))
    for _reader, writer in pool.idle:
        writer.close()
    return out


def _sender(
    host: str,
    port: int,
    request: bytes,
    rate: float,
    seconds: float,
    start_at: float,
    connections: int,
    conn: Any,
) -> None:
    calls = asyncio.run(_open_loop(host, port, request, rate, seconds, start_at, connections))
    conn.send((calls, time.process_time()))
    conn.close()


@dataclass
class RunResult:
    rate: float
    seconds: float
    calls: list[Sample]
    quiet: list[Sample]
    rss_before: float
    rss_peak: float
    rss_after: float
    rss_samples: list[tuple[float, float]] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)  # per process during the run
    counters: dict[str, float] = field(default_factory=dict)  # gateway /metrics deltas
    service_rss_after: float = float("nan")
    check_ok: int = 0
    check_total: int = 0

    def _of(self, status: int) -> list[float]:
        return [lat for _t, lat, s, _r, _l in self.calls if s == status]

    def summary(self) -> dict[str, Any]:
        admitted, refused = self._of(200), self._of(503)
        others: dict[str, int] = {}
        for _t, _lat, s, _r, _l in self.calls:
            if s not in (200, 503):
                what = {0: "conn/timeout", -1: "not sent (all connections busy)"}.get(s, str(s))
                others[what] = others.get(what, 0) + 1
        sent_span = max((t for t, *_ in self.calls), default=0.0) or self.seconds
        quiet_ok = [lat for _t, lat, s, _r, _l in self.quiet if s == 200]
        return {
            "offered_per_s": round(self.rate),
            "sent_per_s": round(len(self.calls) / max(sent_span, 1e-9)),
            "calls": len(self.calls),
            "admitted_per_s": round(len(admitted) / self.seconds, 1),
            "refused_per_s": round(len(refused) / self.seconds, 1),
            "refused_with_retry_after": sum(1 for _t, _lat, s, r, _l in self.calls if s == 503 and r),
            "other_failures": others,
            "admitted_p50_ms": pct(admitted, 50),
            "admitted_p99_ms": pct(admitted, 99),
            "admitted_max_ms": round(max(admitted) * 1000, 1) if admitted else None,
            "refused_p99_ms": pct(refused, 99),
            "quiet_ok": f"{len(quiet_ok)}/{len(self.quiet)}",
            "quiet_p99_ms": pct(quiet_ok, 99),
            "gateway_rss_mb": {
                "before": round(self.rss_before, 1),
                "peak": round(self.rss_peak, 1),
                "after_idle": round(self.rss_after, 1),
            },
            "send_lag_p99_ms": pct([lag for *_x, lag in self.calls], 99),
            "cpu_s": {name: round(v, 1) for name, v in self.cpu_s.items()},
            "gateway_metrics": self.counters,
            "service_rss_after_mb": round(self.service_rss_after, 1),
            "after_check": f"{self.check_ok}/{self.check_total}",
        }

    def timeline(self) -> str:
        """Per second of the run: admitted, refused, p99 of admitted ms (by scheduled send time)."""
        seconds: dict[int, list[Sample]] = {}
        for sample in self.calls:
            seconds.setdefault(int(sample[0]), []).append(sample)
        rows = []
        for second in sorted(seconds):
            calls = seconds[second]
            ok = [lat for _t, lat, s, _r, _l in calls if s == 200]
            refused = sum(1 for c in calls if c[2] == 503)
            rows.append(f"{second}s:{len(ok)}/{refused}/{fmt(pct(ok, 99))}")
        return " ".join(rows)


def pct(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0] * 1000, 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000, 1)


def run_rate(
    args: argparse.Namespace,
    rate: float,
    flood: tuple[str, int, bytes],
    quiet: tuple[str, int, bytes],
    pids: dict[str, int],
    base: str,
) -> RunResult:
    host, port, request = flood
    counters_before = gateway_counters(base)
    gateway_pid = pids["gateway"]
    rss_before = rss_mb(gateway_pid)
    cpu_before = {name: cpu_s(pid) for name, pid in pids.items()}
    start_at = time.time() + 1.0
    ctx = mp.get_context("spawn")
    pipes, procs = [], []
    for _ in range(args.senders):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=_sender,
            args=(
                host,
                port,
                request,
                rate / args.senders,
                args.seconds,
                start_at,
                args.connections // args.senders,
                child,
            ),
        )
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.time() - start_at, rss_mb(gateway_pid)))
            stop.wait(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    quiet_calls = asyncio.run(
        _open_loop(quiet[0], quiet[1], quiet[2], args.quiet_rate, args.seconds, start_at, 200)
    )
    calls: list[Sample] = []
    generator_cpu = 0.0
    for parent in pipes:
        sent, used = parent.recv()
        calls += sent
        generator_cpu += used
    for proc in procs:
        proc.join()
    cpu = {name: cpu_s(pid) - cpu_before[name] for name, pid in pids.items()}
    cpu["load generator"] = generator_cpu
    counters_after = gateway_counters(base)
    time.sleep(args.idle_s)
    stop.set()
    sampler.join()
    rss_after = rss_mb(gateway_pid)
    result = RunResult(
        rate=rate,
        seconds=args.seconds,
        calls=calls,
        quiet=quiet_calls,
        rss_before=rss_before,
        rss_peak=max((r for _t, r in samples), default=float("nan")),
        rss_after=rss_after,
        rss_samples=samples,
        cpu_s=cpu,
        counters={k: v - counters_before.get(k, 0.0) for k, v in counters_after.items()},
        service_rss_after=max(
            (rss_mb(pid) for name, pid in pids.items() if name not in ("gateway", "nats")),
            default=float("nan"),
        ),
    )
    checks = asyncio.run(_open_loop(host, port, request, 10, args.check_calls / 10, time.time() + 0.1, 10))
    result.check_ok = sum(1 for c in checks if c[2] == 200)
    result.check_total = len(checks)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", type=float, nargs="+", default=[500, 1500, 3000])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--senders", type=int, default=2, help="load generator processes")
    parser.add_argument("--quiet-rate", type=float, default=10.0, help="calls/s of the quiet org")
    parser.add_argument("--idle-s", type=float, default=20.0, help="idle time before 'after' RSS")
    parser.add_argument(
        "--connections",
        type=int,
        default=2000,
        help="most connections the flood may hold open (past it a call counts as not sent)",
    )
    parser.add_argument("--check-calls", type=int, default=20, help="calls sent after the idle time")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="extra environment for ./mesh up"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--timeline", action="store_true", help="also print each second's figures")
    parser.add_argument("--keep", action="store_true", help="keep the ./mesh up state directory")
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="bench-overload-"))
    env_extra = dict(item.split("=", 1) for item in args.env)
    runner, facts = start_mesh(state, env_extra)
    try:
        mcp_url, admin_key = facts["mcp_url"], facts["admin_key"]
        base = mcp_url.rsplit("/mcp", 1)[0]
        pids = facts["pids"]
        gateway_pid = pids["gateway"]
        _flood_org, flood_key = make_org(base, admin_key, "Flood")
        _quiet_org, quiet_key = make_org(base, admin_key, "Quiet")
        flood_ctx = create_context(mcp_url, flood_key)
        quiet_ctx = create_context(mcp_url, quiet_key)
        for _ in range(50):  # warm: catalog, stamps, auth cache
            tool_call(mcp_url, flood_key, "context_get", {"ctx_id": flood_ctx, "last_n": 5})
            tool_call(mcp_url, quiet_key, "context_get", {"ctx_id": quiet_ctx, "last_n": 5})
        time.sleep(3)
        load = os.getloadavg()
        print(
            f"./mesh up in {state}; gateway pid {gateway_pid}, {os.cpu_count()} CPUs, "
            f"load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; extra env {env_extra or '-'}"
        )
        flood = raw_request(mcp_url, flood_key, flood_ctx)
        quiet = raw_request(mcp_url, quiet_key, quiet_ctx)
        summaries = []
        for rate in args.rates:
            result = run_rate(args, rate, flood, quiet, pids, base)
            summary = result.summary()
            summaries.append(summary)
            print(json.dumps(summary))
            if args.timeline:
                print("  admitted/refused/p99 ms per second:", result.timeline())
        print_table(summaries)
        if args.json:
            args.json.write_text(json.dumps({"env": env_extra, "runs": summaries}, indent=2) + "\n")
    finally:
        stop_mesh(runner)
        if not args.keep:
            shutil.rmtree(state, ignore_errors=True)


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        f"\n{'offered':>8}{'sent/s':>8}{'admit/s':>9}{'refuse/s':>9}{'other':>7}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'ref p99':>9}{'quiet ok':>10}{'quiet p99':>10}{'RSS before/peak/after MB':>27}{'check':>7}"
    )
    for r in rows:
        rss = r["gateway_rss_mb"]
        other = sum(r["other_failures"].values())
        print(
            f"{r['offered_per_s']:>8}{r['sent_per_s']:>8}{r['admitted_per_s']:>9}{r['refused_per_s']:>9}"
            f"{other:>7}{fmt(r['admitted_p50_ms']):>9}{fmt(r['admitted_p99_ms']):>9}"
            f"{fmt(r['refused_p99_ms']):>9}{r['quiet_ok']:>10}{fmt(r['quiet_p99_ms']):>10}"
            f"{rss['before']:>9}/{rss['peak']}/{rss['after_idle']:<9}{r['after_check']:>7}"
        )


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


if __name__ == "__main__":
    main()
