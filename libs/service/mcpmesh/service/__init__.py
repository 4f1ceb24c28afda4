"""The service kit: write an MCP service with the `mcp` SDK, serve it on the tenant-stamped bus."""

from mcpmesh.service.call import Call, call_of
from mcpmesh.service.envsettings import settings_from_env
from mcpmesh.service.grants import Shared
from mcpmesh.service.jobs import JobContext
from mcpmesh.service.run import BusServer, run
from mcpmesh.service.server import (
    TOOL_BUDGET_META,
    TOOL_IDEMPOTENCY_KEY_META,
    TOOL_SCOPE_META,
    TOOL_TIERS_META,
    Lifespan,
    MeshService,
)
from mcpmesh.service.settings import JobSettings, ServiceSettings, StartupError
from mcpmesh.service.vault import TOOL_SECRET_ARGS_META

__all__ = [
    "TOOL_BUDGET_META",
    "TOOL_IDEMPOTENCY_KEY_META",
    "TOOL_SCOPE_META",
    "TOOL_SECRET_ARGS_META",
    "TOOL_TIERS_META",
    "BusServer",
    "Call",
    "JobContext",
    "JobSettings",
    "Lifespan",
    "MeshService",
    "ServiceSettings",
    "Shared",
    "StartupError",
    "call_of",
    "run",
    "settings_from_env",
]
