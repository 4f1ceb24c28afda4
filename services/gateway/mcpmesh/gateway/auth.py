"""Who is calling: the API key from `x-api-key` or `Authorization: Bearer`, and the 401 that
points an unauthenticated client at the protected resource metadata (RFC 9728)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from mcpmesh.gateway.control.principal import AuthFailed
from mcpmesh.gateway.errors import GatewayError
from mcpmesh.proto.errors import ErrorCode
from mcpmesh.tenancy.scopes import scope_for

RESOURCE_METADATA_PATH: Final = "/.well-known/oauth-protected-resource"


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The API key the request presents, or None; AuthFailed('malformed') for a non-Bearer Authorization."""
    key = headers.get("x-api-key")
    if key is not None and key.strip():
        return key.strip()
    authorization = headers.get("authorization")
    if authorization is None or not authorization.strip():
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthFailed(
            "malformed", "send the API key as 'Authorization: Bearer <key>' or in the x-api-key header"
        )
    return token.strip()


def unauthorized(error: AuthFailed, base_url: str) -> GatewayError:
    challenge = f'Bearer resource_metadata="{base_url}{RESOURCE_METADATA_PATH}"'
    if error.reason != "missing":
        challenge += f', error="invalid_token", error_description="{error.message.replace(chr(34), chr(39))}"'
    return GatewayError(
        ErrorCode.UNAUTHENTICATED,
        error.message,
        status=401,
        headers={"WWW-Authenticate": challenge},
        extra={"reason": error.reason},
    )


def resource_metadata(base_url: str, services: list[str]) -> dict[str, Any]:
    """The RFC 9728 document: what this resource is and how to present a credential."""
    scopes = ["*"]
    for service in services:
        scopes += [scope_for(service, "read"), scope_for(service, "write"), f"{service}:*"]
    return {
        "resource": f"{base_url}/mcp",
        "resource_name": "mcpmesh",
        "bearer_methods_supported": ["header"],
        "scopes_supported": scopes,
        "resource_documentation": f"{base_url}/admin/openapi.json",
        "mcpmesh_credentials": (
            "an API key issued through the admin API, sent as 'Authorization: Bearer <key>' "
            "or in the x-api-key header"
        ),
    }
