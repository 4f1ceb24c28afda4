"""Hybrid retrieval finds a paraphrase that lexical search misses: the org's own embedding
model (an OpenAI-compatible endpoint, scripted to embed by meaning) through mcp-llm, the same
path a real semantic model takes (tools/bench/bench_rag_quality.py measures one)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from mcpmesh.llm import LlmSettings
from mcpmesh.llm.testing import FakeProvider
from mcpmesh.rag.testing import Rag, org

#: Words by the concept they express: the fake model's "meaning".
CONCEPTS = (
    {"refund", "refunds", "reimbursed", "repaid", "money", "back"},
    {"days", "weeks", "long", "until", "when", "within"},
    {"transfer", "transfers", "abroad", "wire", "fee"},
    {"password", "reset", "login", "sign"},
)


def by_meaning(text: str) -> list[float]:
    words = re.findall(r"[a-z]+", text.lower())
    return [float(sum(word in concept for word in words)) for concept in CONCEPTS] + [0.1]


@pytest.fixture
def llm_settings() -> LlmSettings:
    return LlmSettings(allow_private_endpoints=True)  # the scripted model listens on 127.0.0.1


@pytest.fixture
async def meaning() -> AsyncIterator[FakeProvider]:
    async with FakeProvider(embedding=by_meaning) as provider:
        yield provider


async def test_hybrid_finds_a_paraphrase_that_lexical_search_misses(rag: Rag, meaning: FakeProvider) -> None:
    a = org()
    model = {"name": "meaning", "mode": "embedding", "class": "embedding"}
    provider = {"name": "mine", "api_base": meaning.url, "api_key": "sk-test", "models": [model]}
    assert rag.llm is not None
    await rag.llm.call_tool(a, "set_provider", provider, scopes=["llm:admin"])
    await rag.llm.call_tool(a, "set_aliases", {"aliases": {"embed": "meaning"}}, scopes=["llm:admin"])
    await rag.call(a, "create_kb", {"kb": "help"})
    docs = {
        "refunds": "Customers are reimbursed within 14 days of returning the item.",
        "wires": "Money transfers abroad cost a fixed fee per transfer.",
        "login": "A forgotten password is reset from the sign in page.",
    }
    for doc_id, content in docs.items():
        await rag.call(a, "add_document", {"kb": "help", "doc_id": doc_id, "content": content})
    question = {"kb": "help", "query": "how long until I get my money back", "min_score": 0}

    lexical = await rag.call(a, "search", {**question, "dense_weight": 0.0})
    assert "refunds" not in [h["doc_id"] for h in lexical["hits"]]  # no word in common
    assert [h["doc_id"] for h in lexical["hits"]] == ["wires"]  # "money" only
    dense = await rag.call(a, "search", {**question, "dense_weight": 1.0})
    assert dense["hits"][0]["doc_id"] == "refunds"
    hybrid = await rag.call(a, "search", {**question, "top_k": 2})
    # both: the paraphrase (dense) and the lexical match (RRF ranks the one both found first)
    assert [h["doc_id"] for h in hybrid["hits"]] == ["wires", "refunds"]
    assert hybrid["hits"][1]["text"] == docs["refunds"] and hybrid["hits"][1]["chunk"] == 0
    assert any(seen.path == "/v1/embeddings" for seen in meaning.requests)  # the org's model embedded
