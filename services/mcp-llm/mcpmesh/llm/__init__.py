"""mcp-llm: every org's LLM providers behind one service (see README.md)."""

import os

# litellm's bundled cost map, unless the operator asks for the remote one: reproducible prices,
# and no fetch from GitHub (with retries and pauses) when litellm is first imported.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from mcpmesh.llm.service import app_of, build_service
from mcpmesh.llm.settings import LlmSettings

__all__ = ["LlmSettings", "app_of", "build_service"]
