"""How per-tenant resource names are formed: `<org>__<name>`.

Only libs/store (MongoDB collections) and libs/vectors (Qdrant collections) call these;
everything else gets handles from them and never sees a collection name.
"""

from __future__ import annotations

import re
from typing import Final

from mcpmesh.proto.ids import InvalidIdentifier, validate_org_id

SEPARATOR: Final = "__"
_NAME_RE: Final = re.compile(r"^[a-z0-9_]{1,40}$")


def validate_name(value: object, what: str) -> str:
    """A collection kind or knowledge-base name: 1-40 lowercase letters, digits or underscores."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        shown = value if isinstance(value, str) and len(value) <= 60 else "<value>"
        raise InvalidIdentifier(
            f"invalid {what} {shown!r}: expected 1-40 lowercase letters, digits or underscores"
        )
    return value


def tenant_prefix(org_id: str) -> str:
    """`<org>__`: org ids never contain `_`, so this prefix matches exactly one org."""
    return validate_org_id(org_id) + SEPARATOR


def name_in_tenant(collection_name: str, org_id: str) -> str | None:
    """What follows `<org>__` in `collection_name`, or None when it is not that org's."""
    prefix = tenant_prefix(org_id)
    if not collection_name.startswith(prefix) or len(collection_name) == len(prefix):
        return None
    return collection_name[len(prefix) :]
