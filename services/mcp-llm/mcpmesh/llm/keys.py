"""An org's provider API keys: the kit's tenant secrets (`call.secrets`, sealed, write-only),
one per provider, named `provider.<name>`. Set with `set_provider(api_key=...)` or the kit's
`llm_secret_set` (and the gateway's admin secrets API) under that name."""

from __future__ import annotations

import hashlib
from typing import Any, Final

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.secrets import InvalidSecret, SecretValue, TenantSecrets

PREFIX: Final = "provider."


def secret_name(provider: str) -> str:
    return PREFIX + provider


class ProviderKeys:
    """The keys of the org whose vault this is (there is no way to name another org)."""

    def __init__(self, vault: TenantSecrets) -> None:
        self._vault = vault

    async def put(self, provider: str, key: str) -> dict[str, Any]:
        try:
            info = await self._vault.put(secret_name(provider), key)
        except InvalidSecret:
            raise MeshException(
                ErrorCode.INVALID_REQUEST, f"api_key of provider {provider!r} must be a non-empty string"
            ) from None
        return _shown(info.to_dict())

    async def reveal(self, provider: str) -> SecretValue | None:
        return await self._vault.reveal(secret_name(provider))

    async def delete(self, provider: str) -> bool:
        return await self._vault.delete(secret_name(provider))

    async def infos(self) -> dict[str, dict[str, Any]]:
        """provider name -> what may be shown of its key (fingerprint, last four, when set)."""
        return {
            info.name.removeprefix(PREFIX): _shown(info.to_dict())
            for info in await self._vault.infos()
            if info.name.startswith(PREFIX)
        }


def version_of(keys: dict[str, dict[str, Any]]) -> str:
    """Changes whenever a key is set, replaced or removed (part of a router's identity)."""
    stamp = "|".join(f"{name}={k['fingerprint']}@{k['updated_at']}" for name, k in sorted(keys.items()))
    return hashlib.sha256(stamp.encode()).hexdigest()[:16] if keys else ""


def _shown(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if k in ("fingerprint", "last4", "updated_at")}
