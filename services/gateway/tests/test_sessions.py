"""Session ids: sealed, bound to their claims, expiring, bounded in size."""

from __future__ import annotations

import time

import pytest

from mcpmesh.gateway.sessions import MAX_TOKEN_CHARS, InvalidSession, SessionCodec

KEY = bytes(range(32))


def issue(codec: SessionCodec, **extra: object) -> str:
    options: dict[str, object] = dict(
        org_id="org-acme",
        key_id="key-abcdefabcdef",
        service=None,
        protocol_version="2025-11-25",
        client_info={"name": "c", "version": "1"},
        capabilities={"roots": {"listChanged": True}},
    )
    options.update(extra)
    token, _ = codec.issue(**options)  # type: ignore[arg-type]
    return token


def test_round_trip_and_any_replica_with_the_same_key_opens_it() -> None:
    token = issue(SessionCodec(KEY, ttl_s=60))
    claims = SessionCodec(KEY, ttl_s=60).open(token)
    assert (claims.org, claims.key, claims.svc, claims.pv) == (
        "org-acme",
        "key-abcdefabcdef",
        "",
        "2025-11-25",
    )
    assert claims.ci == {"name": "c", "version": "1"} and claims.cc == {"roots": {"listChanged": True}}
    assert all(0x21 <= ord(c) <= 0x7E for c in token)  # a valid Mcp-Session-Id
    assert "org-acme" not in token  # encrypted, not just signed


def test_tampered_foreign_and_garbage_tokens_are_refused() -> None:
    token = issue(SessionCodec(KEY, ttl_s=60))
    other = SessionCodec(bytes(32), ttl_s=60)
    with pytest.raises(InvalidSession):
        other.open(token)
    codec = SessionCodec(KEY, ttl_s=60)
    flipped = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    for bad in (flipped, token[:-3], "", "x" * 10, "!!!", "A" * 20_000):
        with pytest.raises(InvalidSession):
            codec.open(bad)


def test_expired_tokens_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    codec = SessionCodec(KEY, ttl_s=60)
    token = issue(codec)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 120)
    with pytest.raises(InvalidSession, match="expired"):
        codec.open(token)


def test_huge_capabilities_are_trimmed_to_fit_a_header() -> None:
    codec = SessionCodec(KEY, ttl_s=60)
    import os

    noisy = {f"cap{i}": {"blob": os.urandom(64).hex()} for i in range(100)}
    token = issue(codec, capabilities=noisy, client_info={"name": "n" * 5000, "version": "1"})
    assert len(token) <= MAX_TOKEN_CHARS
    claims = codec.open(token)
    assert claims.cc == {k: {} for k in noisy} and claims.ci is None
