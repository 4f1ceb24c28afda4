"""mcp-rag retrieval quality: recall@10 and nDCG@10 of dense, sparse and hybrid search on a small
labelled set (tools/bench/data/rag_eval: 100 short documents of a made-up network-equipment
vendor, 70 queries — exact identifiers such as error codes, SKUs and function names,
paraphrases that share few or no words with their document, and mixes of both — each with
its relevant document ids; self-made for this benchmark, under the project's licence).

The documents go through the real services over NATS (tools/bench/ragmesh.py): `add_document`
into one kb (chunking, mcp-llm `embed`, sparse vectors, Qdrant local mode), then `search` with
`top_k` 10 per query in three modes, selected per call by `dense_weight`: 1 (dense only), 0
(sparse only) and the org's default 0.5 (hybrid: weighted RRF of both prefetches). A query's
ranking is its hits' documents in order. Per embedding model (the offline `mock/hash-embed`,
and `local/all-minilm-l6-v2` where its optional package is installed: services/mcp-llm README
"Local embedding model"); then, per paraphrase query, the rank of its first relevant document
in each mode ("-": not in the top 10).

    .venv/bin/python tools/bench/bench_rag_quality.py [--models MODEL ...] [--min-score S]

Results: services/mcp-rag/README.md "Benchmarks".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from pathlib import Path
from typing import Any

from ragmesh import RagMesh, rag_mesh

from mcpmesh.llm import local
from mcpmesh.rag import RagSettings

DATA = Path(__file__).resolve().parent / "data" / "rag_eval"
K = 10
MODES = {"dense": 1.0, "sparse": 0.0, "hybrid": None}  # dense_weight; None: the org's default
KINDS = ("identifier", "paraphrase", "mixed")


def load(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


def recall(ranked: list[str], relevant: set[str]) -> float:
    return len(set(ranked[:K]) & relevant) / len(relevant)


def ndcg(ranked: list[str], relevant: set[str]) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, doc in enumerate(ranked[:K]) if doc in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(K, len(relevant))))
    return dcg / ideal


def first_rank(ranked: list[str], relevant: set[str]) -> str:
    return next((str(i + 1) for i, doc in enumerate(ranked[:K]) if doc in relevant), "-")


async def rankings(
    mesh: RagMesh, queries: list[dict[str, Any]], min_score: float | None
) -> dict[str, dict[str, list[str]]]:
    """mode -> query id -> the documents of its hits, best first."""
    out: dict[str, dict[str, list[str]]] = {mode: {} for mode in MODES}
    for q in queries:
        for mode, weight in MODES.items():
            args: dict[str, Any] = {"query": q["query"], "kb": "eval", "top_k": K}
            if weight is not None:
                args["dense_weight"] = weight
            if min_score is not None:
                args["min_score"] = min_score
            hits = (await mesh.call("search", args))["hits"]
            out[mode][q["id"]] = list(dict.fromkeys(h["doc_id"] for h in hits))
    return out


async def evaluate(model: str, min_score: float | None) -> list[str]:
    documents, queries = load("documents.jsonl"), load("queries.jsonl")
    lines = [
        f"\n## embedding model {model}, min_score {min_score if min_score is not None else 'org default'}"
    ]
    async with rag_mesh(RagSettings(embed_model=model)) as mesh:
        await mesh.call("create_kb", {"kb": "eval"})
        started = time.perf_counter()
        for d in documents:
            args = {"kb": "eval", "doc_id": d["id"], "title": d["title"], "content": d["text"]}
            await mesh.call("add_document", args)
        ingest_s = time.perf_counter() - started
        started = time.perf_counter()
        ranked = await rankings(mesh, queries, min_score)
        search_ms = (time.perf_counter() - started) * 1000 / (len(queries) * len(MODES))
    lines.append(
        f"{len(documents)} documents ingested in {ingest_s:.1f} s (a local model's load included); "
        f"{search_ms:.0f} ms per search\n"
    )
    lines.append("| queries | n | " + " | ".join(f"{m} R@{K}" for m in MODES) + " | ")
    lines[-1] += " | ".join(f"{m} nDCG@{K}" for m in MODES) + " |"
    lines.append("|---" * (2 + 2 * len(MODES)) + "|")
    for kind in ("all", *KINDS):
        chosen = [q for q in queries if kind in ("all", q["kind"])]
        cells = []
        for metric in (recall, ndcg):
            for mode in MODES:
                scores = [metric(ranked[mode][q["id"]], set(q["relevant"])) for q in chosen]
                cells.append(f"{sum(scores) / len(scores):.3f}")
        lines.append(f"| {kind} | {len(chosen)} | " + " | ".join(cells) + " |")
    for alone in ("dense", "sparse"):
        rescued = [
            q
            for q in queries
            if first_rank(ranked[alone][q["id"]], set(q["relevant"])) == "-"
            and first_rank(ranked["hybrid"][q["id"]], set(q["relevant"])) != "-"
        ]
        kinds = ", ".join(f"{kind} {sum(q['kind'] == kind for q in rescued)}" for kind in KINDS)
        lines.append(f"\nhybrid finds (top {K}) what {alone} alone misses: {len(rescued)} queries ({kinds})")
    lines.append(f"\nparaphrase queries: rank of the first relevant document (top {K}; '-': not found)\n")
    lines.append("| query | relevant | " + " | ".join(MODES) + " |")
    lines.append("|---|---|" + "---|" * len(MODES))
    for q in queries:
        if q["kind"] == "paraphrase":
            relevant = set(q["relevant"])
            ranks = " | ".join(first_rank(ranked[mode][q["id"]], relevant) for mode in MODES)
            lines.append(f"| {q['query']} | {', '.join(q['relevant'])} | {ranks} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default = ["mock/hash-embed"] + ([f"local/{local.MODEL}"] if local.available() else [])
    parser.add_argument(
        "--models", nargs="+", default=default, help=f"mcp-llm embedding models (default {default})"
    )
    parser.add_argument(
        "--min-score", type=float, default=None, help="per-call min_score (default: the org's, 0.3)"
    )
    args = parser.parse_args()
    for model in args.models:
        print("\n".join(asyncio.run(evaluate(model, args.min_score))), flush=True)


if __name__ == "__main__":
    main()
