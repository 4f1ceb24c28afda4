"""mcp-llm: every org's LLM providers behind one service (see README.md)."""

from mcpmesh.llm.service import app_of, build_service
from mcpmesh.llm.settings import LlmSettings

__all__ = ["LlmSettings", "app_of", "build_service"]
