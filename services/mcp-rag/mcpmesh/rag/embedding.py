"""Dense embeddings through mcp-llm's `embed` tool, as the caller's org (its model and keys)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.rag.app import Caller, RagApp


async def embed(app: RagApp, caller: Caller, texts: Sequence[str]) -> list[list[float]]:
    """Vectors in the order of `texts`, `RAG_EMBED_BATCH` texts per `llm_embed` call."""
    vectors: list[list[float]] = []
    step = app.settings.embed_batch
    for at in range(0, len(texts), step):
        batch = list(texts[at : at + step])
        reply = await caller.call_tool(
            "llm", "embed", {"texts": batch, "model": app.settings.embed_model}, on_progress=None
        )
        got = structured(reply).get("vectors")
        if not isinstance(got, list) or len(got) != len(batch):
            raise MeshException(ErrorCode.INTERNAL, "mcp-llm answered embed without one vector per text")
        vectors.extend(got)
    return vectors


def structured(result: dict[str, Any]) -> dict[str, Any]:
    """A callee's CallToolResult's structured content."""
    content = result.get("structuredContent")
    if not isinstance(content, dict):
        raise MeshException(ErrorCode.INTERNAL, "mcp-llm answered without structured content")
    return content
