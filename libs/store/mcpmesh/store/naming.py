"""Collection names: the only place they are built. Per-tenant data is `<org>__<kind>`."""

from __future__ import annotations

from typing import Final, Literal, TypeAlias, get_args

from mcpmesh.proto.ids import InvalidIdentifier, validate_org_id
from mcpmesh.proto.tenant_names import SEPARATOR, name_in_tenant, tenant_prefix, validate_name

ControlName: TypeAlias = Literal["tenants", "api_keys", "usage", "audit"]
#: Control-plane collections shared by all orgs; every row carries `org_id`.
CONTROL_COLLECTIONS: Final[tuple[ControlName, ...]] = get_args(ControlName)


def validate_kind(value: object) -> str:
    """A per-tenant collection kind: 1-40 lowercase letters, digits or underscores."""
    return validate_name(value, "collection kind")


def tenant_collection_name(org_id: str, kind: str) -> str:
    return tenant_prefix(org_id) + validate_kind(kind)


def kind_of(collection_name: str, org_id: str) -> str | None:
    """The kind of `collection_name` when it is one of `org_id`'s collections, else None."""
    return name_in_tenant(collection_name, org_id)


def org_of(collection_name: str, kind: str) -> str | None:
    """The org whose `<org>__<kind>` collection this is, or None when it is not one."""
    org_id, separator, rest = collection_name.partition(SEPARATOR)
    if not separator or rest != kind:
        return None
    try:
        return validate_org_id(org_id)
    except InvalidIdentifier:
        return None


def validate_control_name(value: object) -> ControlName:
    for name in CONTROL_COLLECTIONS:
        if value == name:
            return name
    expected = ", ".join(CONTROL_COLLECTIONS)
    raise ValueError(f"unknown control collection {value!r}: expected one of {expected}")
