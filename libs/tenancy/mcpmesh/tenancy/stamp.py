"""The tenant stamp: a short-lived EdDSA JWT the gateway mints and every service verifies.

Claims: `org_id`, `tier`, `scopes`, `key_tags` (the key's tags), `sub` (key id), `aud` (the
target service plus the services it may call on the caller's behalf), `iat`, `exp`, `jti`,
`iss`. A stamp without `key_tags` (minted before tags existed) is one of a key without tags.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any, Final

import jwt
import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.proto.ids import InvalidIdentifier, validate_org_id

ISSUER: Final = "mcpmesh-gateway"
DEFAULT_TTL_S: Final = 60

#: Services a service may call downstream with the caller's stamp (DESIGN.md §1).
DOWNSTREAM: Final[dict[str, tuple[str, ...]]] = {
    "debate": ("llm", "context"),
    "rag": ("llm",),
    "dxp": ("logs",),
}


class Stamp(msgspec.Struct, frozen=True, kw_only=True):
    org_id: str
    tier: str
    scopes: list[str]
    key_tags: list[str] = msgspec.field(default_factory=list)
    sub: str
    aud: list[str]
    exp: int
    iat: int
    jti: str
    iss: str = ISSUER


def generate_signing_key_pem() -> str:
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_key_pem(signing_key_pem: str) -> str:
    key = serialization.load_pem_private_key(signing_key_pem.encode(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def load_signing_key(signing_key_pem: str) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(signing_key_pem.encode(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the stamp signing key must be an Ed25519 private key (PEM, PKCS8)")
    return key


def load_public_key(public_key_pem: str) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(public_key_pem.encode())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the stamp public key must be an Ed25519 public key (PEM)")
    return key


def audience_for(service: str) -> list[str]:
    """The target service, then the services it may call downstream with the same stamp."""
    return [service, *DOWNSTREAM.get(service, ())]


class StampSigner:
    def __init__(self, signing_key_pem: str, ttl_s: int = DEFAULT_TTL_S) -> None:
        self._key = load_signing_key(signing_key_pem)
        self.ttl_s = ttl_s

    def mint(
        self,
        *,
        org_id: str,
        tier: str,
        scopes: list[str],
        sub: str,
        service: str,
        key_tags: Iterable[str] = (),
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "org_id": validate_org_id(org_id),
            "tier": tier,
            "scopes": list(scopes),
            "key_tags": list(key_tags),
            "sub": sub,
            "aud": audience_for(service),
            "iat": now,
            "exp": now + self.ttl_s,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._key, algorithm="EdDSA")


def decode_signed(
    token: str,
    key: Ed25519PublicKey,
    *,
    audience: str,
    issuer: str,
    leeway_s: int,
    require: list[str],
    expired: str,
    wrong_audience: str,
    invalid: str,
) -> dict[str, Any]:
    """The claims of an EdDSA JWT the gateway signed (stamp, tenant command, job ticket), or a
    MeshException with the given sentence: UNAUTHENTICATED when `expired` or `invalid`,
    FORBIDDEN for another audience."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=["EdDSA"],
            audience=audience,
            issuer=issuer,
            leeway=leeway_s,
            options={"require": require},
        )
    except jwt.ExpiredSignatureError:
        raise MeshException(ErrorCode.UNAUTHENTICATED, expired) from None
    except jwt.InvalidAudienceError:
        raise MeshException(ErrorCode.FORBIDDEN, wrong_audience) from None
    except jwt.PyJWTError:
        raise MeshException(ErrorCode.UNAUTHENTICATED, invalid) from None
    return claims


class StampVerifier:
    def __init__(self, public_key_pem: str, leeway_s: int = 5) -> None:
        self._key = load_public_key(public_key_pem)
        self.leeway_s = leeway_s

    def verify(self, token: str | None, audience: str) -> Stamp:
        """A verified stamp for `audience`, or MeshException saying what is wrong (never why inside)."""
        if not token:
            raise MeshException(
                ErrorCode.UNAUTHENTICATED, "missing tenant stamp: requests must come through the gateway"
            )
        claims = decode_signed(
            token,
            self._key,
            audience=audience,
            issuer=ISSUER,
            leeway_s=self.leeway_s,
            require=["exp", "iat", "jti", "aud", "sub", "iss"],
            expired="tenant stamp expired: retry the request",
            wrong_audience=f"tenant stamp is not valid for service {audience!r}",
            invalid="invalid tenant stamp",
        )
        try:
            if isinstance(claims.get("aud"), str):
                claims["aud"] = [claims["aud"]]
            stamp = msgspec.convert(claims, Stamp)
            validate_org_id(stamp.org_id)
        except (msgspec.ValidationError, InvalidIdentifier):
            raise MeshException(ErrorCode.UNAUTHENTICATED, "invalid tenant stamp claims") from None
        return stamp
