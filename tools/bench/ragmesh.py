"""What the mcp-rag benchmarks share: mcp-rag and mcp-llm on a local nats-server, as in the
service tests (services/mcp-rag/tests/conftest.py): each on a ServiceHarness (stamped requests
over the bus, the gateway's NATS user), the store at MONGODB_URL or a SecantusDB process of the
benchmark's own, Qdrant local mode in a temporary directory (the embedded default), the llm
service on its default system table (the offline provider; the local model where installed)."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from mcpmesh.bus.mcp import request_body, result_of
from mcpmesh.dev.mongoproc import LocalMongoServer
from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.llm import LlmSettings
from mcpmesh.llm import build_service as build_llm
from mcpmesh.llm.app import quiet_litellm
from mcpmesh.rag import RagSettings
from mcpmesh.rag import build_service as build_rag
from mcpmesh.secrets import new_master_key_entry
from mcpmesh.service import ServiceSettings
from mcpmesh.service.testing import ServiceHarness
from mcpmesh.store import connect_database
from mcpmesh.telemetry.logs import configure_logging

SCOPES = ["rag:read", "rag:write", "llm:read"]
ORG = "org-bench-rag"


@dataclass
class RagMesh:
    rag: ServiceHarness
    llm: ServiceHarness

    async def call(
        self, tool: str, args: dict[str, Any], *, org: str = ORG, deadline_s: float = 600.0
    ) -> Any:
        """A rag tool's structured result, as `org` (a pro-tier key); long deadline: the local
        model loads at its first request and large documents take a while."""
        body = request_body("tools/call", {"name": tool, "arguments": args})
        stamp = self.rag.stamp(org, SCOPES)  # a stamp lives a minute: one per call
        result = result_of(await self.rag.raw(org, body, stamp=stamp, deadline_s=deadline_s))
        if result.get("isError"):
            raise RuntimeError(f"{tool}: {result.get('content')}")
        return result["structuredContent"]


@contextlib.asynccontextmanager
async def rag_mesh(rag_settings: RagSettings) -> AsyncIterator[RagMesh]:
    configure_logging("bench", json=False, level="WARNING")
    quiet_litellm()
    nats = LocalNatsServer()
    mongo = None if os.environ.get("MONGODB_URL") else LocalMongoServer()
    mongo_url = os.environ.get("MONGODB_URL") or mongo.url  # type: ignore[union-attr]
    database = f"bench_rag_{uuid.uuid4().hex[:8]}"
    try:
        with tempfile.TemporaryDirectory(prefix="bench-rag-") as qdrant:
            rag_store = ServiceSettings(mongodb_url=mongo_url, mongodb_database=database, qdrant_path=qdrant)
            llm_store = ServiceSettings(
                mongodb_url=mongo_url, mongodb_database=database + "_llm", secrets_keys=new_master_key_entry()
            )
            async with ServiceHarness(build_rag(rag_settings), nats.url, settings=rag_store) as rag:
                llm = ServiceHarness(
                    build_llm(LlmSettings()),
                    nats.url,
                    settings=llm_store,
                    signing_key_pem=rag.signing_key_pem,
                )
                async with llm:
                    yield RagMesh(rag, llm)
            for name in (database, database + "_llm"):
                db = connect_database(mongo_url, name)
                await db.client.drop_database(name)
                db.client.close()
    finally:
        nats.close()
        if mongo is not None:
            mongo.close()
