"""mcp-rag throughput on the embedded default: ingest chunks/s and search p50/p95 at a kb size.

The services as tools/bench/ragmesh.py runs them (rag and llm on a local nats-server, the
store at MONGODB_URL or a SecantusDB process of the benchmark's own, Qdrant local mode, the
offline `mock/hash-embed` model). Synthetic documents (seeded): DOC_CHUNKS sections of about
150 words each, drawn Zipf-like from a 20 000-word made-up vocabulary, so every section is one
chunk; `add_document` calls, `--concurrency` at a time, until the kb holds each size asked
for; at each size, `--searches` hybrid searches (3-6 query words, top_k 10) one at a time,
then the same queries dense only and sparse only (`dense_weight` 1 and 0).

Then where ingest time goes, each part timed alone on the same chunks in this process:
hash-embed embedding, the sparse vectors, the Qdrant local-mode upsert (a kb of its own, a
document's chunks per call) — the rest of a call's time is the bus, mcp-llm (routing, usage,
embedding cache), chunking and the MongoDB records.

    .venv/bin/python tools/bench/bench_rag.py [--sizes 10000 100000] [--concurrency 2]
        [--searches 200] [--budget-s 1500]

`--budget-s` bounds the ingest: a size not reached within it is reported as not measured,
with the rate so far and the time it would take at that rate. Results: services/mcp-rag/README.md
"Benchmarks".
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import statistics
import tempfile
import time
from typing import Any

from ragmesh import ORG, RagMesh, rag_mesh

from mcpmesh.llm.offline import hash_embedding
from mcpmesh.rag import RagSettings, sparse
from mcpmesh.vectors import HybridPoint, Vectors, connect_qdrant, point_id_for

DOC_CHUNKS = 50
WORDS_PER_CHUNK = 150
VOCABULARY = 20_000
SYLLABLES = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "de", "va", "shu", "ge", "bo", "zi", "ar", "en"]


class Corpus:
    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        words = set()
        while len(words) < VOCABULARY:
            words.add("".join(self.rng.choices(SYLLABLES, k=self.rng.randint(2, 4))))
        self.words = sorted(words)
        self.cumulative = list(
            itertools.accumulate(1 / (rank + 1) for rank in range(VOCABULARY))
        )  # Zipf, s = 1

    def text(self, n: int) -> str:
        return " ".join(self.rng.choices(self.words, cum_weights=self.cumulative, k=n))

    def document(self, number: int) -> str:
        sections = (f"## Part {number}.{i}\n\n{self.text(WORDS_PER_CHUNK)}" for i in range(DOC_CHUNKS))
        return f"# Document {number}\n\n" + "\n\n".join(sections)

    def query(self) -> str:
        middle = self.words[50:5000]  # neither the commonest words nor the rarest
        return " ".join(self.rng.sample(middle, self.rng.randint(3, 6)))


def percentiles(ms: list[float]) -> tuple[float, float]:
    ordered = sorted(ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


async def searches(mesh: RagMesh, queries: list[str]) -> list[str]:
    rows = []
    for mode, weight in (("hybrid", None), ("dense", 1.0), ("sparse", 0.0)):
        took = []
        for query in queries:
            args: dict[str, Any] = {"query": query, "kb": "bench", "top_k": 10}
            if weight is not None:
                args["dense_weight"] = weight
            started = time.perf_counter()
            await mesh.call("search", args)
            took.append((time.perf_counter() - started) * 1000)
        p50, p95 = percentiles(took)
        rows.append(f"search {mode}: p50 {p50:.1f} ms, p95 {p95:.1f} ms ({len(queries)} searches)")
    return rows


class Filler:
    """Fills the kb `bench` with the corpus's documents, `concurrency` `add_document` calls at a
    time; `chunks` and the clock carry over from one `fill` to the next."""

    def __init__(self, mesh: RagMesh, corpus: Corpus, concurrency: int) -> None:
        self.mesh, self.corpus, self.concurrency = mesh, corpus, concurrency
        self.chunks, self.documents, self.started = 0, 0, time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    async def fill(self, size: int, budget_s: float) -> bool:
        """Add documents until the kb holds `size` chunks (True) or `budget_s` seconds of
        filling in all are spent (False)."""
        while self.chunks < size and self.elapsed < budget_s:
            batch = [self.corpus.document(self.documents + i) for i in range(self.concurrency)]
            self.documents += self.concurrency
            done = await asyncio.gather(
                *(
                    self.mesh.call("add_document", {"kb": "bench", "content": d, "type": "markdown"})
                    for d in batch
                )
            )
            self.chunks += sum(d["chunks"] for d in done)
            if self.documents % 20 == 0:
                print(
                    f"  {self.chunks} chunks, {self.elapsed:.0f} s, {self.chunks / self.elapsed:.0f} chunks/s",
                    flush=True,
                )
        return self.chunks >= size


async def ingest_and_search(
    sizes: list[int], concurrency: int, n_searches: int, budget_s: float
) -> list[str]:
    corpus = Corpus()
    queries = [corpus.query() for _ in range(n_searches)]
    report: list[str] = []
    async with rag_mesh(RagSettings()) as mesh:
        await mesh.call("create_kb", {"kb": "bench"})
        filler = Filler(mesh, corpus, concurrency)
        for size in sorted(sizes):
            reached = await filler.fill(size, budget_s)
            chunks, elapsed = filler.chunks, filler.elapsed
            rate = chunks / elapsed
            if not reached:
                report.append(
                    f"\n{size} chunks: NOT REACHED within --budget-s {budget_s:.0f}: {chunks} chunks in "
                    f"{elapsed:.0f} s ({rate:.0f} chunks/s); at that rate {size} would take ~{size / rate / 60:.0f} min"
                )
            else:
                report.append(
                    f"\n{chunks} chunks ingested in {elapsed:.0f} s: {rate:.0f} chunks/s (cumulative)"
                )
            report += await searches(mesh, queries)
            print("\n".join(report[-4:]), flush=True)
            if not reached:
                break
    return report


async def parts(texts: list[str]) -> list[str]:
    """Each ingest step alone on the same chunk texts, per chunk."""
    per_doc = DOC_CHUNKS
    started = time.perf_counter()
    dense = [hash_embedding(t) for t in texts]
    embed_s = time.perf_counter() - started
    started = time.perf_counter()
    terms = [sparse.document_vector(t, 200) for t in texts]
    sparse_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="bench-rag-qdrant-") as path:
        vectors = Vectors(connect_qdrant(None, path=path)).for_tenant(ORG)
        await vectors.ensure_hybrid_kb("parts", len(dense[0]))
        points = [
            HybridPoint(point_id_for(f"p/{i}"), d, s, {"text": t})
            for i, (d, s, t) in enumerate(zip(dense, terms, texts, strict=True))
        ]
        started = time.perf_counter()
        for at in range(0, len(points), per_doc):
            await vectors.upsert("parts", points[at : at + per_doc])
        upsert_s = time.perf_counter() - started
        await vectors.drop_kb("parts")
    n = len(texts)
    return [
        f"\nper chunk, each part alone ({n} chunks):",
        f"  hash-embed embedding   {embed_s / n * 1000:.3f} ms",
        f"  sparse vector          {sparse_s / n * 1000:.3f} ms",
        f"  Qdrant local upsert    {upsert_s / n * 1000:.3f} ms ({per_doc} points per call, into an empty kb)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--budget-s", type=float, default=1500.0, help="most seconds of ingest in all")
    args = parser.parse_args()
    report = asyncio.run(ingest_and_search(args.sizes, args.concurrency, args.searches, args.budget_s))
    corpus = Corpus(seed=11)
    texts = [corpus.text(WORDS_PER_CHUNK) for _ in range(2000)]
    report += asyncio.run(parts(texts))
    print("\n".join(report))


if __name__ == "__main__":
    main()
