from __future__ import annotations

import pytest

from mcpmesh.vectors import InvalidIdentifier, validate_kb_name
from mcpmesh.vectors.naming import kb_collection_name, kb_of


def test_kb_collection_name_joins_org_and_kb() -> None:
    assert kb_collection_name("org-acme", "handbook") == "org-acme__handbook"


@pytest.mark.parametrize("kb", ["docs", "a", "kb_2024", "x" * 40])
def test_valid_kb_names_are_accepted(kb: str) -> None:
    assert validate_kb_name(kb) == kb


@pytest.mark.parametrize("kb", ["", "Docs", "org-b__docs", "a/b", "a b", "x" * 41, None, 7])
def test_invalid_kb_names_are_rejected_with_a_clear_message(kb: object) -> None:
    with pytest.raises(InvalidIdentifier, match=r"invalid knowledge base name .*1-40 lowercase letters"):
        validate_kb_name(kb)


@pytest.mark.parametrize("org", ["acme", "org-ab", "org-A1b", "org-ab_c", ""])
def test_invalid_org_ids_never_become_collection_names(org: str) -> None:
    with pytest.raises(InvalidIdentifier, match="invalid org id"):
        kb_collection_name(org, "docs")


def test_kb_of_matches_the_exact_org_prefix_only() -> None:
    assert kb_of("org-abc__docs", "org-abc") == "docs"
    assert kb_of("org-abcd__docs", "org-abc") is None
    assert kb_of("org-abc__", "org-abc") is None
    assert kb_of("docs", "org-abc") is None
