from __future__ import annotations

import time

import jwt
import pytest

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.tenancy import (
    InvalidIdentifier,
    StampSigner,
    StampVerifier,
    covers,
    hash_api_key,
    new_api_key,
    parse_api_key,
    validate_org_id,
)
from mcpmesh.tenancy.apikeys import check_key_tags, key_matches
from mcpmesh.tenancy.stamp import ISSUER, generate_signing_key_pem, load_signing_key, public_key_pem


@pytest.mark.parametrize("org", ["org-abc", "org-acme-corp-2", "org-" + "a" * 40])
def test_valid_org_ids(org: str) -> None:
    assert validate_org_id(org) == org


@pytest.mark.parametrize(
    "org",
    [
        "org-ab",
        "org-" + "a" * 41,
        "ORG-acme",
        "org-Acme",
        "org_acme",
        "acme",
        "org-a.b",
        "org-a*",
        "org->",
        "org-acme\n",
        "",
        None,
        42,
    ],
)
def test_invalid_org_ids_are_rejected_with_a_clear_message(org: object) -> None:
    with pytest.raises(InvalidIdentifier, match="expected 'org-' followed by 3-40"):
        validate_org_id(org)


def test_stamp_round_trip_and_audience_list() -> None:
    pem = generate_signing_key_pem()
    token = StampSigner(pem).mint(
        org_id="org-acme", tier="pro", scopes=["rag:read"], sub="key-1", service="rag"
    )
    verifier = StampVerifier(public_key_pem(pem))
    stamp = verifier.verify(token, audience="rag")
    assert (stamp.org_id, stamp.tier, stamp.scopes, stamp.sub) == ("org-acme", "pro", ["rag:read"], "key-1")
    assert stamp.aud == ["rag", "llm"]  # rag may call llm downstream with this stamp
    assert verifier.verify(token, audience="llm").jti == stamp.jti
    with pytest.raises(MeshException) as info:
        verifier.verify(token, audience="context")
    assert info.value.error.code is ErrorCode.FORBIDDEN


def test_stamp_carries_the_keys_tags_and_a_stamp_without_them_means_none() -> None:
    pem = generate_signing_key_pem()
    verifier = StampVerifier(public_key_pem(pem))
    signer = StampSigner(pem)
    token = signer.mint(
        org_id="org-acme", tier="pro", scopes=["*"], sub="key-1", service="rag", key_tags=["support", "eu"]
    )
    assert verifier.verify(token, audience="rag").key_tags == ["support", "eu"]
    assert (
        verifier.verify(
            signer.mint(org_id="org-acme", tier="pro", scopes=["*"], sub="key-1", service="rag"),
            audience="rag",
        ).key_tags
        == []
    )
    now = int(time.time())
    claims = {"iss": ISSUER, "org_id": "org-acme", "tier": "pro", "scopes": ["*"], "sub": "key-1"}
    claims |= {"aud": ["rag"], "iat": now, "exp": now + 60, "jti": "j1"}
    before_tags = jwt.encode(claims, load_signing_key(pem), algorithm="EdDSA")  # as minted before tags
    assert verifier.verify(before_tags, audience="rag").key_tags == []
    malformed = jwt.encode({**claims, "key_tags": "support"}, load_signing_key(pem), algorithm="EdDSA")
    with pytest.raises(MeshException, match="invalid tenant stamp claims"):
        verifier.verify(malformed, audience="rag")


def test_tampered_stamp_is_rejected() -> None:
    pem = generate_signing_key_pem()
    token = StampSigner(pem).mint(org_id="org-acme", tier="pro", scopes=["*"], sub="key-1", service="rag")
    head, body, sig = token.split(".")
    forged = ".".join([head, body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1], sig])
    with pytest.raises(MeshException) as info:
        StampVerifier(public_key_pem(pem)).verify(forged, audience="rag")
    assert info.value.error.code is ErrorCode.UNAUTHENTICATED


def test_missing_stamp_is_unauthenticated() -> None:
    verifier = StampVerifier(public_key_pem(generate_signing_key_pem()))
    with pytest.raises(MeshException, match="missing tenant stamp"):
        verifier.verify(None, audience="rag")


@pytest.mark.parametrize(
    ("granted", "required", "ok"),
    [
        (["context:read"], "context:read", True),
        (["context:write"], "context:read", False),
        (["context:*"], "context:write", True),
        (["debate:*"], "context:read", False),
        (["*"], "rag:write", True),
        (["*"], "admin", False),
        (["admin"], "admin", True),
        ([], "context:read", False),
    ],
)
def test_scope_matching(granted: list[str], required: str, ok: bool) -> None:
    assert covers(granted, required) is ok


def test_api_keys_are_parsed_and_hashed_never_echoed() -> None:
    key = new_api_key()
    assert parse_api_key(key.secret) == key.key_id
    stored = hash_api_key(key.secret, b"pepper")
    assert key.secret not in stored and key_matches(key.secret, stored, b"pepper")
    assert not key_matches(new_api_key().secret, stored, b"pepper")
    with pytest.raises(InvalidIdentifier) as info:
        parse_api_key(key.secret[:-1] + "!")
    assert key.secret[:10] not in str(info.value)


def test_key_tags_are_short_labels_sorted_and_bounded() -> None:
    assert check_key_tags(["support", "team:billing", "a.b-c_d", "support"]) == [
        "a.b-c_d",
        "support",
        "team:billing",
    ]
    assert check_key_tags([]) == []
    for bad in (["Support"], ["-x"], [""], ["a" * 65], ["a b"], [3], "support", None):
        with pytest.raises(InvalidIdentifier):
            check_key_tags(bad)
    assert check_key_tags(["a" * 64]) == ["a" * 64]
    assert len(check_key_tags([f"t{i}" for i in range(16)])) == 16
    with pytest.raises(InvalidIdentifier, match="at most 16 tags"):
        check_key_tags([f"t{i}" for i in range(17)])
