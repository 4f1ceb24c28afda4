"""mcp-debate: multi-agent debates owned by one org, run as durable jobs (see README.md)."""

from mcpmesh.debate.service import build_service
from mcpmesh.debate.settings import DebateSettings

__all__ = ["DebateSettings", "build_service"]
