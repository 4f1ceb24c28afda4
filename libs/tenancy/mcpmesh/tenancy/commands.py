"""The admin authorization a tenant data command carries: the gateway signs it, services verify it.

`control.tenants.<action>.<service>` makes a service delete or export everything it holds
for one org. Broker permissions already let only the gateway publish there; on top of that
the command carries an EdDSA JWT signed with the gateway's stamp key, bound to the action,
the org and the service, short-lived and used once (`jti`). A tenant stamp is not one (its
issuer differs), nor is an authorization for another action, org or service.
"""

from __future__ import annotations

import time
import uuid
from typing import Final

import jwt

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.proto.ids import validate_org_id, validate_service_name
from mcpmesh.proto.subjects import TENANT_ACTIONS
from mcpmesh.tenancy.stamp import decode_signed, load_public_key, load_signing_key

COMMAND_ISSUER: Final = "mcpmesh-gateway/tenant-command"
COMMAND_TTL_S: Final = 60
_MAX_SEEN: Final = 100_000


class CommandSigner:
    """Held by the gateway (its stamp signing key)."""

    def __init__(self, signing_key_pem: str, ttl_s: int = COMMAND_TTL_S) -> None:
        self._key = load_signing_key(signing_key_pem)
        self.ttl_s = ttl_s

    def authorize(self, *, action: str, org_id: str, service: str) -> str:
        if action not in TENANT_ACTIONS:
            raise ValueError(f"unknown tenant action {action!r}")
        now = int(time.time())
        claims = {
            "iss": COMMAND_ISSUER,
            "sub": "admin",
            "aud": validate_service_name(service),
            "act": action,
            "org_id": validate_org_id(org_id),
            "iat": now,
            "exp": now + self.ttl_s,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._key, algorithm="EdDSA")


class CommandVerifier:
    """Held by every service replica (the gateway's stamp public key)."""

    def __init__(self, public_key_pem: str, leeway_s: int = 5) -> None:
        self._key = load_public_key(public_key_pem)
        self.leeway_s = leeway_s
        self._seen: dict[str, float] = {}  # jti -> exp: an authorization is used once

    def verify(self, token: str, *, action: str, org_id: str, service: str) -> None:
        """Return if `token` authorizes exactly this command; else MeshException saying why."""
        if not token:
            raise MeshException(
                ErrorCode.UNAUTHENTICATED,
                "tenant command without an admin authorization: only the gateway may send one",
            )
        claims = decode_signed(
            token,
            self._key,
            audience=service,
            issuer=COMMAND_ISSUER,
            leeway_s=self.leeway_s,
            require=["exp", "iat", "jti", "aud", "iss"],
            expired="the tenant command's authorization expired",
            wrong_audience=f"the tenant command's authorization is not for service {service!r}",
            invalid="invalid tenant command authorization",
        )
        if claims.get("act") != action or claims.get("org_id") != org_id:
            raise MeshException(
                ErrorCode.FORBIDDEN, f"the tenant command's authorization is not for {action} of {org_id}"
            )
        now = time.time()
        jti = str(claims["jti"])
        if jti in self._seen:
            raise MeshException(ErrorCode.FORBIDDEN, "the tenant command's authorization was already used")
        if len(self._seen) >= _MAX_SEEN:
            self._seen = {k: exp for k, exp in self._seen.items() if exp + self.leeway_s > now}
        self._seen[jti] = float(claims["exp"])
