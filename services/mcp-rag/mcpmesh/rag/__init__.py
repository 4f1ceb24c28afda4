"""mcp-rag: per-tenant knowledge bases with hybrid retrieval and citations (see README.md)."""

from mcpmesh.rag.service import build_service
from mcpmesh.rag.settings import RagSettings

__all__ = ["RagSettings", "build_service"]
