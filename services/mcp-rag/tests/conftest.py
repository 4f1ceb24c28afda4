"""A fresh rag service per test, beside a real llm service (its offline provider: hash-embed
embeddings, echo chat) on the session's nats-server, with Qdrant local mode in a temp dir."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.llm import LlmSettings
from mcpmesh.llm import build_service as build_llm
from mcpmesh.rag import RagSettings, build_service
from mcpmesh.rag.testing import Rag
from mcpmesh.secrets import new_master_key_entry
from mcpmesh.service import ServiceSettings
from mcpmesh.service.testing import ServiceHarness
from mcpmesh.store import connect_database


async def _drop(mongo_url: str, database: str) -> None:
    db = connect_database(mongo_url, database)
    await db.client.drop_database(database)
    db.client.close()


@pytest.fixture
def rag_settings() -> RagSettings:
    return RagSettings(chunk_tokens=40, chunk_overlap=8, embed_batch=4, max_document_bytes=50_000)


@pytest.fixture
def llm_settings() -> LlmSettings:
    return LlmSettings()


@pytest.fixture
async def rag(
    nats_server: LocalNatsServer,
    mongo_url: str,
    rag_settings: RagSettings,
    llm_settings: LlmSettings,
    tmp_path: Path,
) -> AsyncIterator[Rag]:
    database = f"rag_test_{uuid.uuid4().hex[:10]}"
    llm_service_settings = ServiceSettings(
        mongodb_url=mongo_url, mongodb_database=database + "_llm", secrets_keys=new_master_key_entry("t1")
    )
    settings = ServiceSettings(
        mongodb_url=mongo_url, mongodb_database=database, qdrant_path=str(tmp_path / "qdrant")
    )
    async with ServiceHarness(build_service(rag_settings), nats_server, settings=settings) as harness:
        llm = ServiceHarness(
            build_llm(llm_settings),
            nats_server,
            settings=llm_service_settings,
            signing_key_pem=harness.signing_key_pem,
        )
        async with llm:
            yield Rag(harness, llm)
    await _drop(mongo_url, database)
    await _drop(mongo_url, database + "_llm")
