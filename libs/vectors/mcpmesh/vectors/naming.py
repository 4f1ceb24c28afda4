"""Qdrant collection names: the only place they are built. A knowledge base is `<org>__<kb>`."""

from __future__ import annotations

from mcpmesh.proto.tenant_names import name_in_tenant, tenant_prefix, validate_name


def validate_kb_name(value: object) -> str:
    """A knowledge-base name: 1-40 lowercase letters, digits or underscores."""
    return validate_name(value, "knowledge base name")


def kb_collection_name(org_id: str, kb: str) -> str:
    return tenant_prefix(org_id) + validate_kb_name(kb)


def kb_of(collection_name: str, org_id: str) -> str | None:
    """The knowledge base of `collection_name` when it is one of `org_id`'s, else None."""
    return name_in_tenant(collection_name, org_id)
