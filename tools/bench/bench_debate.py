"""mcp-debate benchmark: orchestration overhead per turn, and concurrent debates per replica.

A deployment as in production, one OS process per component, on this machine: `./mesh up
--only llm,context,debate` (the dev runner: a locked-down nats-server, the SecantusDB store
process, mcp-llm, mcp-context, one mcp-debate replica and the gateway — a debate's run is a job:
the gateway gives it its job ticket, and the benchmark starts and follows debates through it)
and an OpenAI-compatible fake provider answering at once, in a process of its own (mcp-llm's
only provider). Each level runs N society debates at once (2 agents, `--rounds` rounds: 2 turns
a round), each in an org of its own, debate after debate until `--debates` have run. A turn's
time is the gap between two consecutive turn records of a debate (their `at`): with the fake
answering at once, that is the orchestration (mcp-llm's routing and usage writes, the turn
record, the transcript append in mcp-context, the debate's totals, the job's progress). Reported
per level: p50/p95/p99 turn ms, turns/s and the CPU time each process spent per turn (from
/proc: where a turn's work goes); the largest level whose p99 stays <= 50 ms.

    .venv/bin/python tools/bench/bench_debate.py [--levels 1 2 4 8 16] [--debates 32] [--rounds 4]
        [--profile debate] [--env NAME=VALUE ...]

`--profile debate` (or llm, context, gateway, store) writes a cProfile (CPU time) of that component's
process to the state directory, printed at the end (`python -m pstats FILE`). Everything,
the benchmark included, shares this machine's CPUs: say what else ran.

Measured 2026-12-02 (defaults; shared and quiet box): see services/mcp-debate/README.md
("Cost") for the figures before and after the per-turn writes were cut.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_overload import cpu_s, make_org, start_mesh, stop_mesh, tool_call

from mcpmesh.store import connect_database

P99_LIMIT_MS = 50.0
POLL_S = 0.5  # how often a client asks whether its debate ended (not in the measured gaps)

#: The processes `--profile` can profile: their modules and their names in the runner's pids.
PROFILED = {
    "debate": ("mcpmesh.debate", "mcp-debate"),
    "llm": ("mcpmesh.llm", "mcp-llm"),
    "context": ("mcpmesh.context", "mcp-context"),
    "gateway": ("mcpmesh.gateway", "gateway"),
    "store": ("secantus", "mongo"),
}
#: Loaded by every Python process of the run (PYTHONPATH); profiles the one `--profile` names.
SITECUSTOMIZE = """\
import sys
if sys.orig_argv[1:3] == ["-m", {module!r}]:
    import atexit, cProfile, time
    _profiler = cProfile.Profile(time.process_time)  # CPU time: contention does not blur it
    _profiler.enable()
    atexit.register(lambda: (_profiler.disable(), _profiler.dump_stats({path!r})))
"""


def serve_fake() -> None:
    """`--serve-fake`: the fake provider in this process; prints its URL, serves until SIGTERM."""
    from mcpmesh.llm.testing import FakeProvider

    async def serve() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with FakeProvider() as fake:
            fake.requests = _Forgetful()  # it keeps every request otherwise
            print(fake.url, flush=True)
            await stop.wait()

    asyncio.run(serve())


class _Forgetful(list[Any]):
    def append(self, _item: Any) -> None:
        pass


def start_fake() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__)), "--serve-fake"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url:
        raise SystemExit("the fake provider did not start")
    return proc, url


def stop_process(pid: int, timeout_s: float = 30.0) -> None:
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def call(mcp_url: str, key: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
    result = tool_call(mcp_url, key, name, args).get("result") or {}
    if result.get("isError") or "structuredContent" not in result:
        raise RuntimeError(f"{name}: {result}")
    return result["structuredContent"]  # type: ignore[no-any-return]


async def one_debate(mcp_url: str, key: str, rounds: int) -> str:
    people = [{"name": "Ada"}, {"name": "Bo"}]
    made = await asyncio.to_thread(
        call, mcp_url, key, "debate_create", {"topic": "Bench?", "participants": people, "rounds": rounds}
    )
    await asyncio.to_thread(call, mcp_url, key, "debate_run", {"debate_id": made["debate_id"]})
    while True:
        await asyncio.sleep(POLL_S)
        view = await asyncio.to_thread(call, mcp_url, key, "debate_get", {"debate_id": made["debate_id"]})
        if view["status"] not in ("created", "running"):
            if view["status"] != "succeeded":
                raise RuntimeError(f"debate {made['debate_id']} ended {view['status']}: {view.get('error')}")
            return str(made["debate_id"])


async def turn_gaps(db: Any, org: str, debate_id: str) -> list[float]:
    turns = await db[f"{org}__turns"].find({"debate_id": debate_id}).sort("idx", 1).to_list(None)
    at = [t["at"] for t in turns]
    return [(b - a).total_seconds() * 1000 for a, b in itertools.pairwise(at)]


async def store_ops(db: Any) -> dict[str, int]:
    """The store's operation counters so far (`serverStatus`, which SecantusDB answers)."""
    counters = (await db.client.admin.command("serverStatus"))["opcounters"]
    return {
        op: int(counters.get(op, 0)) for op in ("insert", "query", "update", "delete", "getmore", "command")
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def level(
    facts: dict[str, Any], db: Any, tenants: list[tuple[str, str]], debates: int, rounds: int
) -> dict[str, Any]:
    """`len(tenants)` debates at once (one per org), each worker running debates back to back."""
    per_worker = max(1, debates // len(tenants))

    async def worker(org: str, key: str) -> list[float]:
        gaps: list[float] = []
        for _ in range(per_worker):
            debate_id = await one_debate(facts["mcp_url"], key, rounds)
            gaps += await turn_gaps(db, org, debate_id)
        return gaps

    pids = facts["pids"]
    cpu_before = {name: cpu_s(pid) for name, pid in pids.items()}
    ops_before = await store_ops(db)
    started = time.perf_counter()
    done = await asyncio.gather(*(worker(org, key) for org, key in tenants))
    wall = time.perf_counter() - started
    gaps = [g for d in done for g in d]
    turns = len(tenants) * per_worker * 2 * rounds
    cpu = {name: (cpu_s(pid) - cpu_before[name]) * 1000 / turns for name, pid in pids.items()}
    ops = {op: (n - ops_before[op]) / turns for op, n in (await store_ops(db)).items()}
    return {
        "ops": ops,
        "p50": pct(gaps, 0.5),
        "p95": pct(gaps, 0.95),
        "p99": pct(gaps, 0.99),
        "rate": turns / wall,
        **cpu,
    }


async def measure(facts: dict[str, Any], levels: list[int], debates: int, rounds: int) -> None:
    base = facts["mcp_url"].rsplit("/mcp", 1)[0]
    db = connect_database(facts["mongodb_url"])
    try:
        orgs = [make_org(base, facts["admin_key"], f"Bench{i}") for i in range(max(levels))]
        await asyncio.to_thread(call, facts["mcp_url"], orgs[0][1], "debate_protocols", {})
        await one_debate(facts["mcp_url"], orgs[0][1], 1)  # warm up: imports, routers, indexes
        names = sorted(facts["pids"])
        print("| concurrent debates | p50 turn ms | p95 turn ms | p99 turn ms | turns/s | CPU ms per turn: "
              + ", ".join(names) + " | store ops per turn |\n|---|---|---|---|---|---|---|")  # fmt: skip
        under = 0
        for n in levels:
            row = await level(facts, db, orgs[:n], debates, rounds)
            cpu = " / ".join(f"{row[name]:.1f}" for name in names)
            ops = ", ".join(f"{v:.1f} {op}" for op, v in row["ops"].items() if v >= 0.05)
            print(f"| {n} | {row['p50']:.0f} | {row['p95']:.0f} | {row['p99']:.0f} | {row['rate']:.0f} | {cpu} | {ops} |",
                  flush=True)  # fmt: skip
            if row["p99"] <= P99_LIMIT_MS:
                under = n
        print(
            f"\nconcurrent debates per replica with p99 turn overhead <= {P99_LIMIT_MS:g} ms: {under or 'none'}"
        )
    finally:
        db.client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--debates", type=int, default=32, help="debates per level (at least one per worker)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per debate (2 turns each)")
    parser.add_argument("--profile", choices=sorted(PROFILED))
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for every component")
    parser.add_argument("--serve-fake", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake:
        serve_fake()
        return
    state = Path(tempfile.mkdtemp(prefix="bench-debate-"))
    fake, fake_url = start_fake()
    env = {
        "LLM_PROVIDERS": json.dumps([{"name": "fast", "api_base": fake_url, "models": [{"name": "big"}]}]),
        "LLM_ALIASES": json.dumps({"default": "big"}),
        "LLM_ALLOW_PRIVATE_ENDPOINTS": "true",
        "LOG_LEVEL": "WARNING",
        **dict(item.split("=", 1) for item in args.env),
    }
    profile = state / f"{args.profile}.prof"
    if args.profile:
        (state / "profile").mkdir()
        (state / "profile" / "sitecustomize.py").write_text(
            SITECUSTOMIZE.format(module=PROFILED[args.profile][0], path=str(profile))
        )
        env["PYTHONPATH"] = str(state / "profile")
    runner, facts = None, {}
    try:
        runner, facts = start_mesh(state, env, "--only", "llm,context,debate")
        facts["pids"]["fake"] = fake.pid
        print(
            f"one process each: nats-server, SecantusDB, llm, context, debate, gateway, fake provider; "
            f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; {args.rounds} rounds (2 turns each); "
            f"logs in {state}/logs",
            flush=True,
        )
        asyncio.run(measure(facts, args.levels, args.debates, args.rounds))
    finally:
        if args.profile and facts:  # stopped first, while NATS is up: it exits cleanly and writes
            stop_process(facts["pids"][PROFILED[args.profile][1]])
        if runner is not None:
            stop_mesh(runner)
        fake.terminate()
        fake.wait(timeout=10)
    if args.profile:
        print(f"profile of {args.profile}: {profile} ({'written' if profile.exists() else 'missing'})")


if __name__ == "__main__":
    main()
