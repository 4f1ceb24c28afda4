"""mcp-context: multi-tenant conversation contexts over the mesh (see README.md)."""

from mcpmesh.context.service import app_of, build_service
from mcpmesh.context.settings import ContextSettings

__all__ = ["ContextSettings", "app_of", "build_service"]
