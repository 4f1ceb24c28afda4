"""Qdrant collection names: the only place they are built. A knowledge base is `<org>__<kb>`."""

from __future__ import annotations

import re
from typing import Final

from mcpmesh.proto.ids import InvalidIdentifier, validate_org_id

SEPARATOR: Final = "__"
# The same rule as the store's collection kinds (mcpmesh.store.validate_kind).
_KB_RE: Final = re.compile(r"^[a-z0-9_]{1,40}$")


def validate_kb_name(value: object) -> str:
    """A knowledge-base name: 1-40 lowercase letters, digits or underscores."""
    if not isinstance(value, str) or not _KB_RE.fullmatch(value):
        shown = value if isinstance(value, str) and len(value) <= 60 else "<value>"
        raise InvalidIdentifier(
            f"invalid knowledge base name {shown!r}: expected 1-40 lowercase letters, digits or underscores"
        )
    return value


def tenant_prefix(org_id: str) -> str:
    """`<org>__`: org ids never contain `_`, so this prefix matches exactly one org."""
    validate_org_id(org_id)
    return org_id + SEPARATOR


def kb_collection_name(org_id: str, kb: str) -> str:
    return tenant_prefix(org_id) + validate_kb_name(kb)


def kb_of(collection_name: str, org_id: str) -> str | None:
    """What follows `<org>__` in `collection_name`, or None when it is not that org's."""
    prefix = tenant_prefix(org_id)
    if not collection_name.startswith(prefix) or len(collection_name) == len(prefix):
        return None
    return collection_name[len(prefix) :]
