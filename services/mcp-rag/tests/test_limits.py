"""Tier limits (documents, chunks, bytes, knowledge bases) refuse with what was held and asked."""

from __future__ import annotations

import pytest

from mcpmesh.proto.errors import ErrorCode
from mcpmesh.rag import RagSettings
from mcpmesh.rag.testing import Rag, org


@pytest.fixture
def rag_settings() -> RagSettings:
    limits = '{"pro": {"knowledge_bases": 2, "documents": 2, "chunks": 6, "bytes": 400}}'
    return RagSettings(chunk_tokens=10, chunk_overlap=2, tier_limits=limits)


async def test_tier_limits_refuse_clearly_and_count_again_after_a_delete(rag: Rag) -> None:
    a = org()
    await rag.call(a, "create_kb", {"kb": "one"})
    await rag.call(a, "create_kb", {"kb": "two"})
    failed = await rag.fails(a, "create_kb", {"kb": "three"})
    assert failed.error is not None and failed.error.code == ErrorCode.LIMIT_EXCEEDED
    assert "pro tier allows 2 knowledge bases" in failed.error.message
    await rag.call(a, "add_document", {"kb": "one", "content": "alpha beta gamma", "doc_id": "d1"})
    long = " ".join(f"word{i}" for i in range(60))  # 60 tokens: 7 chunks of 10 with overlap 2
    failed = await rag.fails(a, "add_document", {"kb": "two", "content": long})
    assert failed.error is not None and failed.error.code == ErrorCode.LIMIT_EXCEEDED
    assert failed.error.details["limit"] == "chunks" and failed.error.details["held"] == 1
    await rag.call(a, "add_document", {"kb": "two", "content": "delta", "doc_id": "d2"})
    failed = await rag.fails(a, "add_document", {"kb": "two", "content": "epsilon"})
    assert failed.error is not None and failed.error.details["limit"] == "documents"
    failed = await rag.fails(a, "update_document", {"kb": "two", "doc_id": "d2", "content": "x" * 500})
    assert failed.error is not None and failed.error.details["limit"] == "bytes"
    await rag.call(a, "delete_document", {"kb": "one", "doc_id": "d1"})
    assert (await rag.call(a, "add_document", {"kb": "two", "content": "epsilon"}))["version"] == 1
