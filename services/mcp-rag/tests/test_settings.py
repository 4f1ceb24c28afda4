"""Per-org retrieval settings: defaults, bounds on per-call overrides, attribution of answers."""

from __future__ import annotations

import pytest

from mcpmesh.proto.errors import ErrorCode
from mcpmesh.rag import RagSettings
from mcpmesh.rag.testing import Rag, org


async def test_org_settings_bound_the_calls(rag: Rag) -> None:
    a = org()
    await rag.call(a, "create_kb", {"kb": "kb1"})
    for i in range(4):
        await rag.call(a, "add_document", {"kb": "kb1", "content": f"Backup policy number {i} for disks."})
    assert len((await rag.call(a, "search", {"kb": "kb1", "query": "backup policy"}))["hits"]) == 4
    changed = await rag.call(
        a, "set_retrieval_settings", {"top_k": 2, "max_top_k": 3, "min_score": 0.5, "min_score_floor": 0.4}
    )
    assert (changed["top_k"], changed["max_top_k"]) == (2, 3)
    assert (await rag.call(a, "retrieval_settings"))["min_score_floor"] == 0.4
    found = await rag.call(a, "search", {"kb": "kb1", "query": "backup policy"})
    assert len(found["hits"]) == 2 and found["settings"]["top_k"] == 2
    assert (
        len((await rag.call(a, "search", {"kb": "kb1", "query": "backup policy", "top_k": 3}))["hits"]) == 3
    )
    for override in ({"top_k": 4}, {"min_score": 0.1}, {"dense_weight": 2.0}):
        failed = await rag.fails(a, "search", {"kb": "kb1", "query": "backup", **override})
        assert failed.error is not None and failed.error.code == ErrorCode.INVALID_REQUEST, override
    failed = await rag.fails(a, "set_retrieval_settings", {"top_k": 9})
    assert failed.error is not None and "max_top_k" in failed.error.message
    other = org()  # another org's settings are its own
    assert (await rag.call(other, "retrieval_settings"))["top_k"] == 5


@pytest.mark.parametrize("required", [True, False])
async def test_answers_carry_their_sources_when_attribution_is_required(rag: Rag, required: bool) -> None:
    a = org()
    await rag.call(a, "create_kb", {"kb": "kb1"})
    await rag.call(
        a, "add_document", {"kb": "kb1", "content": "Disks are replaced every five years.", "title": "Disks"}
    )
    await rag.call(a, "set_retrieval_settings", {"require_attribution": required})
    answered = await rag.call(a, "answer", {"kb": "kb1", "question": "disks replaced"})
    # The offline model echoes the question (no [n] in it): attribution appends the sources.
    assert answered["answered"] is True
    assert ("Sources: [1] Disks" in answered["answer"]) is required


@pytest.fixture
def rag_settings() -> RagSettings:
    return RagSettings(chunk_tokens=40, chunk_overlap=8)
