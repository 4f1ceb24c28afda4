"""Scopes: `<service>:read`, `<service>:write`, `<service>:*`, `admin`, and `*` (all but admin)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

Access = Literal["read", "write"]


def scope_for(service: str, access: Access) -> str:
    return f"{service}:{access}"


def covers(granted: Iterable[str], required: str) -> bool:
    """Does any granted scope allow `required`? `write` does not imply `read`; `*` never implies `admin`."""
    granted = set(granted)
    if required in granted:
        return True
    if required == "admin":
        return False
    service, _, _access = required.partition(":")
    return "*" in granted or f"{service}:*" in granted
