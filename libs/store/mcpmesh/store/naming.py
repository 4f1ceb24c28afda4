"""Collection names: the only place they are built. Per-tenant data is `<org>__<kind>`."""

from __future__ import annotations

import re
from typing import Final, Literal, TypeAlias, get_args

from mcpmesh.proto.ids import InvalidIdentifier, validate_org_id

ControlName: TypeAlias = Literal["tenants", "api_keys", "usage", "audit"]
#: Control-plane collections shared by all orgs; every row carries `org_id`.
CONTROL_COLLECTIONS: Final[tuple[ControlName, ...]] = get_args(ControlName)

SEPARATOR: Final = "__"
_KIND_RE: Final = re.compile(r"^[a-z0-9_]{1,40}$")


def validate_kind(value: object) -> str:
    """A per-tenant collection kind: 1-40 lowercase letters, digits or underscores."""
    if not isinstance(value, str) or not _KIND_RE.fullmatch(value):
        shown = value if isinstance(value, str) and len(value) <= 60 else "<value>"
        raise InvalidIdentifier(
            f"invalid collection kind {shown!r}: expected 1-40 lowercase letters, digits or underscores"
        )
    return value


def tenant_prefix(org_id: str) -> str:
    """`<org>__`: org ids never contain `_`, so this prefix matches exactly one org."""
    validate_org_id(org_id)
    return org_id + SEPARATOR


def tenant_collection_name(org_id: str, kind: str) -> str:
    return tenant_prefix(org_id) + validate_kind(kind)


def kind_of(collection_name: str, org_id: str) -> str | None:
    """What follows `<org>__` in `collection_name`, or None when it is not that org's."""
    prefix = tenant_prefix(org_id)
    if not collection_name.startswith(prefix) or len(collection_name) == len(prefix):
        return None
    return collection_name[len(prefix) :]


def validate_control_name(value: object) -> ControlName:
    for name in CONTROL_COLLECTIONS:
        if value == name:
            return name
    expected = ", ".join(CONTROL_COLLECTIONS)
    raise ValueError(f"unknown control collection {value!r}: expected one of {expected}")
