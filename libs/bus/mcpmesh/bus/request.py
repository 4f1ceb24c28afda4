"""Deadlines that travel with a request across hops."""

from __future__ import annotations

import time
from dataclasses import dataclass

from mcpmesh.proto.errors import ErrorCode, MeshException


@dataclass(frozen=True)
class Deadline:
    """An absolute point in wall-clock time (so it can cross processes in a header)."""

    at: float  # unix seconds

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.time() + seconds)

    @classmethod
    def from_header(cls, value: str | None, default_s: float) -> Deadline:
        """The caller's deadline from a `Mcp-Deadline` header, never further than `default_s` away."""
        fallback = time.time() + default_s
        try:
            at = int(value) / 1000 if value else fallback
        except ValueError:
            at = fallback
        return cls(min(at, fallback))

    def header(self) -> str:
        return str(int(self.at * 1000))

    def remaining(self) -> float:
        return self.at - time.time()

    def check(self) -> float:
        """Seconds left; raises TIMEOUT when none are."""
        left = self.remaining()
        if left <= 0:
            raise MeshException(ErrorCode.TIMEOUT, "deadline exceeded before the request could be sent")
        return left
