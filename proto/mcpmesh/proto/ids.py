"""Identifiers the whole platform agrees on: org ids and service names."""

from __future__ import annotations

import re
from typing import Final

ORG_ID_PATTERN: Final = r"^org-[a-z0-9-]{3,40}$"
#: The platform's own org (its system contexts, knowledge bases, provider windows): the services' default.
SYSTEM_ORG: Final = "org-system"
_ORG_ID_RE: Final = re.compile(ORG_ID_PATTERN)

#: Service name -> Python package under `services/`. The name is what appears in
#: subjects (`mcp.<org>.<name>`), scopes (`<name>:read`) and tool prefixes (`<name>_<tool>`).
SERVICES: Final = ("context", "llm", "debate", "rag", "dxp", "logs")
_SERVICE_RE: Final = re.compile(r"^[a-z][a-z0-9]{1,30}$")
#: A service replica's id: its `nats.micro` instance id (a NUID), one subject token.
_INSTANCE_RE: Final = re.compile(r"^[A-Za-z0-9]{1,64}$")

#: What every MCP client accepts as a tool or prompt name (Claude Desktop, the OpenAI API).
TOOL_NAME_PATTERN: Final = r"^[a-zA-Z0-9_-]{1,64}$"
_TOOL_NAME_RE: Final = re.compile(TOOL_NAME_PATTERN)
#: Joins a service and its tool on the aggregate `/mcp` (`context_create`). Service names
#: never contain it, so a qualified name splits at its first `_`.
QUALIFIER: Final = "_"


class InvalidIdentifier(ValueError):
    """An identifier that does not have the shape the platform requires."""


def validate_org_id(value: object) -> str:
    """The one org id check: call it before an id touches a subject, key or collection name."""
    if not isinstance(value, str) or not _ORG_ID_RE.fullmatch(value):
        shown = value if isinstance(value, str) and len(value) <= 60 else "<value>"
        raise InvalidIdentifier(
            f"invalid org id {shown!r}: expected 'org-' followed by 3-40 lowercase letters, digits or hyphens"
        )
    return value


def validate_service_name(value: object) -> str:
    if not isinstance(value, str) or not _SERVICE_RE.fullmatch(value):
        raise InvalidIdentifier(f"invalid service name {value!r}: expected 2-31 lowercase letters or digits")
    return value


def validate_instance_id(value: object) -> str:
    if not isinstance(value, str) or not _INSTANCE_RE.fullmatch(value):
        shown = value if isinstance(value, str) and len(value) <= 70 else "<value>"
        raise InvalidIdentifier(f"invalid replica id {shown!r}: expected 1-64 letters or digits")
    return value


def qualified_tool_name(service: str, tool: str) -> str:
    """The name `/mcp` lists for a service's tool or prompt: `<service>_<tool>`, checked."""
    name = f"{validate_service_name(service)}{QUALIFIER}{tool}"
    if not tool or not _TOOL_NAME_RE.fullmatch(name):
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise InvalidIdentifier(
            f"invalid tool name {shown!r}: '<service>_<tool>' must be 1-64 letters, digits, '_' or '-'"
        )
    return name


def split_qualified_name(name: str) -> tuple[str, str] | None:
    """(service, tool) of a `/mcp` name, split at its first `_`; None when it has no such shape."""
    service, sep, local = name.partition(QUALIFIER)
    if not sep or not local or not _SERVICE_RE.fullmatch(service):
        return None
    return service, local
