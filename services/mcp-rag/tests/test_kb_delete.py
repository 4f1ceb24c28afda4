"""Deleting a kb while a document is written into it: nothing the write makes outlives the
delete (a batch job into a deleted kb: tests/gateway/test_rag.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from mcpmesh.proto.errors import ErrorCode
from mcpmesh.rag.testing import Rag, org
from mcpmesh.vectors import TenantVectors


async def _left_over(rag: Rag, org_id: str, kb: str) -> tuple[list[str], int]:
    """The org's Qdrant collections and its document records of `kb`, read past the service."""
    kbs = await rag.harness.service.vectors.for_tenant(org_id).list_kbs()
    documents = await rag.harness.service.store.for_tenant(org_id).collection("documents")
    return kbs, await documents.count_documents({"kb": kb})


async def test_a_kb_deleted_in_the_middle_of_a_write_stays_deleted(
    rag: Rag, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = org()
    await rag.call(a, "create_kb", {"kb": "docs"})
    real = TenantVectors.upsert

    async def upsert_then_delete(self: TenantVectors, kb: str, points: Sequence[Any]) -> None:
        await real(self, kb, points)  # the points are in ...
        monkeypatch.setattr(TenantVectors, "upsert", real)
        await rag.call(
            a, "delete_kb", {"kb": "docs"}
        )  # ... and the kb is deleted before the record is written

    monkeypatch.setattr(TenantVectors, "upsert", upsert_then_delete)
    failed = await rag.fails(a, "add_document", {"kb": "docs", "content": "Written as the kb goes away."})
    assert failed.error is not None and failed.error.code == ErrorCode.NOT_FOUND
    assert "was deleted" in failed.error.message
    assert await _left_over(rag, a, "docs") == ([], 0)
    await rag.call(a, "create_kb", {"kb": "docs"})  # the name is free, and the new kb empty
    assert (await rag.call(a, "list_documents", {"kb": "docs"}))["documents"] == []
