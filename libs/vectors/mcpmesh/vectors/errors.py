"""Errors callers can act on; each carries a mesh error code so services report it cleanly.

Invalid org ids and knowledge-base names raise `InvalidIdentifier` (a ValueError).
"""

from __future__ import annotations

from mcpmesh.proto.errors import ErrorCode, MeshException

# The ignores below are for a mypy run that sees `mcpmesh.proto` as an untyped installed
# package (no py.typed; source roots not on MYPYPATH); with the roots on MYPYPATH they are unused.


class UnknownKnowledgeBase(MeshException, LookupError):  # type: ignore[misc,unused-ignore]
    def __init__(self, kb: str) -> None:
        super().__init__(ErrorCode.NOT_FOUND, f"knowledge base {kb!r} does not exist")
        self.kb = kb


class KnowledgeBaseMismatch(MeshException, ValueError):  # type: ignore[misc,unused-ignore]
    """`ensure_kb` found the knowledge base with another vector size or distance."""

    def __init__(self, kb: str, wanted: str, found: str) -> None:
        super().__init__(
            ErrorCode.CONFLICT, f"knowledge base {kb!r} exists with {found}, not the requested {wanted}"
        )
        self.kb = kb


class InvalidVector(MeshException, ValueError):  # type: ignore[misc,unused-ignore]
    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.INVALID_REQUEST, message)
