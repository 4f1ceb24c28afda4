from __future__ import annotations

import pytest

from mcpmesh.store import CONTROL_COLLECTIONS, InvalidIdentifier, validate_kind
from mcpmesh.store.naming import kind_of, tenant_collection_name, tenant_prefix, validate_control_name


def test_tenant_collection_name_joins_org_and_kind() -> None:
    assert tenant_collection_name("org-acme", "contexts") == "org-acme__contexts"
    assert tenant_prefix("org-acme") == "org-acme__"


@pytest.mark.parametrize("kind", ["contexts", "a", "kb_2", "x" * 40, "_private"])
def test_valid_kinds_are_accepted(kind: str) -> None:
    assert validate_kind(kind) == kind


@pytest.mark.parametrize(
    "kind",
    ["", "Contexts", "org-b__contexts", "a.b", "$cmd", "a b", "x" * 41, "système", None, 3],
)
def test_invalid_kinds_are_rejected_with_a_clear_message(kind: object) -> None:
    with pytest.raises(InvalidIdentifier, match=r"invalid collection kind .*1-40 lowercase letters"):
        validate_kind(kind)


@pytest.mark.parametrize("org", ["acme", "org-", "org-AB", "org-a_b", "org-ab__x", "", "org-ab/../x"])
def test_invalid_org_ids_never_become_collection_names(org: str) -> None:
    with pytest.raises(InvalidIdentifier, match="invalid org id"):
        tenant_collection_name(org, "contexts")


def test_long_invalid_values_are_not_echoed() -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        validate_kind("A" * 500)
    assert "A" * 61 not in str(caught.value)


def test_kind_of_matches_the_exact_org_prefix_only() -> None:
    assert kind_of("org-abc__contexts", "org-abc") == "contexts"
    assert kind_of("org-abcd__contexts", "org-abc") is None
    assert kind_of("org-abc__", "org-abc") is None
    assert kind_of("api_keys", "org-abc") is None
    assert kind_of("org-abc__contexts", "org-abcd") is None


def test_control_names_are_the_four_shared_collections() -> None:
    assert set(CONTROL_COLLECTIONS) == {"tenants", "api_keys", "usage", "audit"}
    assert validate_control_name("usage") == "usage"
    with pytest.raises(ValueError, match="unknown control collection 'contexts': expected one of tenants"):
        validate_control_name("contexts")
