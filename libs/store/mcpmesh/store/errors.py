"""Errors raised by the store. Invalid org ids and kinds raise `InvalidIdentifier` (a ValueError)."""

from __future__ import annotations


class UndeclaredKind(LookupError):
    """A per-tenant collection kind the Store was not built with: a programming error."""

    def __init__(self, kind: str, declared: frozenset[str]) -> None:
        known = ", ".join(sorted(declared)) or "none"
        super().__init__(f"collection kind {kind!r} is not declared for this store (declared: {known})")
        self.kind = kind
