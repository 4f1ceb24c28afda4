"""search (hybrid: dense + sparse prefetches fused by RRF) and answer (search, then mcp-llm chat
with the hits as numbered sources).

Per-org retrieval settings live in `<org>__rag_settings` {_id: "retrieval", ...}; a call may
override top_k (up to max_top_k), min_score (not below min_score_floor) and dense_weight.
With require_attribution, an answer that cites no source gets the list of its sources appended.
A hit is a candidate when its dense similarity reaches min_score or any of its terms matches
the query lexically (the sparse prefetch); the fused score ranks candidates.
"""

from __future__ import annotations

import re
from typing import Any, Final

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.rag import sparse
from mcpmesh.rag.access import Kb, invalid, resolve
from mcpmesh.rag.app import RagApp
from mcpmesh.rag.embedding import embed, structured
from mcpmesh.rag.visibility import chunk_filter
from mcpmesh.service import Call
from mcpmesh.vectors import HybridQuery

DEFAULTS: Final[dict[str, Any]] = {
    "top_k": 5,
    "max_top_k": 50,
    "min_score": 0.3,
    "min_score_floor": 0.0,
    "dense_weight": 0.5,
    "require_attribution": True,
}
MAX_QUERY_CHARS: Final = 4000
#: RRF's k: small, so each retriever's top ranks dominate (an exact identifier match ranked
#: first lexically is not outvoted by documents both retrievers rank middling); 60, the
#: literature's value, flattens 50-long candidate lists (tools/bench/bench_rag_quality.py).
RRF_K: Final = 5
_CITED: Final = re.compile(r"\[\d+\]")
FILTER_KEYS: Final = ("doc", "title", "section")


async def org_settings(call: Call) -> dict[str, Any]:
    doc = await (await call.store.collection("rag_settings")).find_one({"_id": "retrieval"}) or {}
    return {key: doc.get(key, default) for key, default in DEFAULTS.items()}


async def set_settings(call: Call, changes: dict[str, Any]) -> dict[str, Any]:
    merged = {**await org_settings(call), **{k: v for k, v in changes.items() if v is not None}}
    if not 1 <= merged["top_k"] <= merged["max_top_k"] <= 100:
        raise invalid("need 1 <= top_k <= max_top_k <= 100")
    if not 0.0 <= merged["min_score_floor"] <= merged["min_score"] <= 1.0:
        raise invalid("need 0 <= min_score_floor <= min_score <= 1")
    if not 0.0 <= merged["dense_weight"] <= 1.0:
        raise invalid("dense_weight is between 0 (lexical only) and 1 (dense only)")
    await (await call.store.collection("rag_settings")).replace_one(
        {"_id": "retrieval"}, {"_id": "retrieval", **merged}, upsert=True
    )
    return merged


def effective(
    settings: dict[str, Any], top_k: int | None, min_score: float | None, dense_weight: float | None
) -> dict[str, Any]:
    out = dict(settings)
    if top_k is not None:
        if not 1 <= top_k <= settings["max_top_k"]:
            raise invalid(f"top_k must be between 1 and your org's max_top_k ({settings['max_top_k']})")
        out["top_k"] = top_k
    if min_score is not None:
        if not settings["min_score_floor"] <= min_score <= 1.0:
            raise invalid(f"min_score must be between your org's floor ({settings['min_score_floor']}) and 1")
        out["min_score"] = min_score
    if dense_weight is not None:
        if not 0.0 <= dense_weight <= 1.0:
            raise invalid("dense_weight is between 0 (lexical only) and 1 (dense only)")
        out["dense_weight"] = dense_weight
    return out


def check_filter(where: dict[str, Any] | None) -> dict[str, Any] | None:
    """`{doc|title|section|meta.<key>: value or list}` → a payload filter."""
    if not where:
        return None
    out: dict[str, Any] = {}
    for key, value in where.items():
        if key not in FILTER_KEYS and not (key.startswith("meta.") and len(key) > 5):
            raise invalid(f"cannot filter on {key[:40]!r}: use doc, title, section or meta.<key>")
        ok = isinstance(value, str | int | bool) or (
            isinstance(value, list) and value and all(isinstance(v, str) for v in value)
        )
        if not ok:
            raise invalid(f"filter {key!r}: expected a string, integer, boolean or non-empty list of strings")
        out[key] = value
    return out


def citation(kb: Kb, number: int, hit_id: Any, score: float, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "n": number,
        "kb": kb.name,
        "owner_org": kb.owner,
        "doc_id": payload.get("doc"),
        "version": payload.get("version"),
        "title": payload.get("title"),
        "section": payload.get("section"),
        "chunk": payload.get("chunk"),
        "chunks": payload.get("chunks"),
        "start": payload.get("start"),
        "end": payload.get("end"),
        "pages": payload.get("pages"),
        "score": score,
        "text": payload.get("text"),
        "metadata": payload.get("meta", {}),
    }


async def search(
    app: RagApp,
    call: Call,
    *,
    query: str,
    kb: str,
    top_k: int | None,
    min_score: float | None,
    dense_weight: float | None,
    filter: dict[str, Any] | None,
    owner_org: str | None = None,
) -> dict[str, Any]:
    if not query.strip() or len(query) > MAX_QUERY_CHARS:
        raise invalid(f"query must be 1-{MAX_QUERY_CHARS} characters of text")
    target = await resolve(app, call, kb, "read", owner_org)
    where = check_filter(filter)
    used = effective(await org_settings(call), top_k, min_score, dense_weight)
    extra = {"attribution": target.grant.attribution()} if target.grant is not None else {}
    if not target.doc.get("chunks"):
        return {"hits": [], "settings": used, **extra}
    dense = (await embed(app, call, [query]))[0]
    weight = used["dense_weight"]
    hybrid = HybridQuery(
        dense=dense,
        sparse=sparse.query_vector(query),
        limit=used["top_k"],
        candidates=max(50, used["top_k"] * 4),
        dense_threshold=used["min_score"],
        weights=(weight, 1.0 - weight),
        rrf_k=RRF_K,
    )
    where = {**(where or {}), **chunk_filter(call, target)}  # only chunks of documents the caller may see
    hits = await target.vectors.hybrid_search(target.name, hybrid, where)
    return {
        "hits": [citation(target, i + 1, h.id, h.score, h.payload) for i, h in enumerate(hits)],
        "settings": used,
        **extra,
    }


async def answer(
    app: RagApp,
    call: Call,
    *,
    question: str,
    kb: str,
    top_k: int | None,
    min_score: float | None,
    filter: dict[str, Any] | None,
    owner_org: str | None = None,
) -> dict[str, Any]:
    found = await search(
        app,
        call,
        query=question,
        kb=kb,
        top_k=top_k,
        min_score=min_score,
        dense_weight=None,
        filter=filter,
        owner_org=owner_org,
    )
    sources = found["hits"]
    if not sources:
        return {
            "answer": "No source in the knowledge base is relevant enough to answer this question.",
            "answered": False,
            "sources": [],
        }
    numbered = "\n\n".join(f"[{s['n']}] {s['title']} — {s['section'] or ''}\n{s['text']}" for s in sources)
    messages = [
        {
            "role": "system",
            "content": "Answer only from the numbered sources. Cite them as [n] after each claim. If they "
            "do not contain the answer, say so.",
        },
        {"role": "user", "content": f"Sources:\n{numbered}"},
        {"role": "user", "content": f"Question: {question}"},
    ]
    reply = structured(
        await call.call_tool("llm", "chat", {"messages": messages, "model": app.settings.chat_model})
    )
    content = reply.get("content")
    if not isinstance(content, str):
        raise MeshException(ErrorCode.INTERNAL, "mcp-llm answered chat without text")
    if found["settings"]["require_attribution"] and not _CITED.search(content):
        content += "\n\nSources: " + "; ".join(f"[{x['n']}] {x['title']}" for x in sources)
    answered = {"answer": content, "answered": True, "sources": sources, "model": reply.get("model")}
    return {**answered, **({"attribution": found["attribution"]} if "attribution" in found else {})}
