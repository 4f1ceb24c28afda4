"""One tenant's big search against another's small call on the same mcp-rag replica.

The services as tools/bench/ragmesh.py runs them (Qdrant local mode, the embedded default),
the kb `bench` filled with bench_rag.py's synthetic documents up to `--chunks`. Then a probe:
another org calls `list_kbs` (MongoDB only, never Qdrant) back to back, first alone, then
while `--searches` hybrid searches (bench_rag.py's queries, top_k 10) run one after another.
Reported: the probe's latency alone and of the probes that overlapped a search, how many
probes finished per search, and the searches' latency alone and with the probe running.

    .venv/bin/python tools/bench/bench_rag_isolation.py [--chunks 30000] [--searches 20]

Before mcpmesh.vectors ran local mode on a thread of its own, a probe that met a search
waited for all of it. Results: services/mcp-rag/README.md "Benchmarks".
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable

from bench_rag import Corpus, Filler, percentiles
from ragmesh import RagMesh, rag_mesh

from mcpmesh.rag import RagSettings

OTHER_ORG = "org-bench-other"
Span = tuple[float, float]


async def timed(spans: list[Span], call: Awaitable[object]) -> None:
    started = time.perf_counter()
    await call
    spans.append((started, time.perf_counter()))


def probe(mesh: RagMesh) -> Awaitable[object]:
    return mesh.call("list_kbs", {}, org=OTHER_ORG)


def search(mesh: RagMesh, query: str) -> Awaitable[object]:
    return mesh.call("search", {"query": query, "kb": "bench", "top_k": 10})


async def probes_until(stop: asyncio.Event, mesh: RagMesh, spans: list[Span]) -> None:
    while not stop.is_set():
        await timed(spans, probe(mesh))


def line(name: str, ms: list[float]) -> str:
    if not ms:
        return f"{name}: none"
    p50, p95 = percentiles(ms)
    return f"{name}: p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {max(ms):.1f} ms ({len(ms)} calls)"


async def measure(chunks: int, n_searches: int, budget_s: float) -> list[str]:
    corpus = Corpus()
    queries = [corpus.query() for _ in range(n_searches)]
    async with rag_mesh(RagSettings()) as mesh:
        await mesh.call("create_kb", {"kb": "bench"})
        filler = Filler(mesh, corpus, concurrency=2)
        if not await filler.fill(chunks, budget_s):
            raise SystemExit(f"only {filler.chunks} chunks within --budget-s {budget_s:.0f}")
        alone: list[Span] = []
        for _ in range(50):
            await timed(alone, probe(mesh))
        quiet: list[Span] = []
        for query in queries:
            await timed(quiet, search(mesh, query))
        probes: list[Span] = []
        stop = asyncio.Event()
        prober = asyncio.create_task(probes_until(stop, mesh, probes))
        searches: list[Span] = []
        for query in queries:
            await timed(searches, search(mesh, query))
        stop.set()
        await prober
    met = [[(b - a) * 1000 for a, b in probes if a < end and b > start] for start, end in searches]
    return [
        f"\n{filler.chunks} chunks in the kb; {n_searches} hybrid searches, a probe (list_kbs, another org) back to back",
        line("search alone", [(b - a) * 1000 for a, b in quiet]),
        line("search during probes", [(b - a) * 1000 for a, b in searches]),
        line("probe alone", [(b - a) * 1000 for a, b in alone]),
        line("probe during searches", [ms for during in met for ms in during]),
        line("slowest probe of each search", [max(during) for during in met if during]),
        f"probes finished per search: {sum(map(len, met)) / n_searches:.1f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=30_000)
    parser.add_argument("--searches", type=int, default=20)
    parser.add_argument("--budget-s", type=float, default=1500.0, help="most seconds of ingest")
    args = parser.parse_args()
    print("\n".join(asyncio.run(measure(args.chunks, args.searches, args.budget_s))))


if __name__ == "__main__":
    main()
