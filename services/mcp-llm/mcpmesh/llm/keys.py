"""An org's provider API keys: sealed in its own secrets (libs/secrets), write-only.

The one place the service touches keys, so the switch to the kit's `call.secrets` (branch
`secrets`) is this module alone: `vault_of` then returns `call.secrets`.
"""

from __future__ import annotations

from typing import Any

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.secrets import InvalidSecret, MasterKeys, SecretsConfigError, SecretValue, TenantSecrets
from mcpmesh.store import TenantStore


def secret_name(provider: str) -> str:
    return f"provider.{provider}"


class ProviderKeys:
    """The keys of the org a `TenantStore` is scoped to (there is no way to name another org)."""

    def __init__(self, tenant: TenantStore, master: MasterKeys | None) -> None:
        if master is None:
            raise MeshException(
                ErrorCode.UNAVAILABLE,
                "this deployment keeps no org provider keys (no MCPMESH_SECRETS_KEYS): ask the operator",
                retryable=False,
            )
        self._vault = TenantSecrets(tenant, master)

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
        """provider name -> what may be shown of its key (fingerprint, last four, times)."""
        prefix = secret_name("")
        return {
            info.name.removeprefix(prefix): _shown(info.to_dict())
            for info in await self._vault.infos()
            if info.name.startswith(prefix)
        }


def _shown(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if k in ("fingerprint", "last4", "updated_at")}


def load_master_keys() -> MasterKeys | None:
    """The master keys from the environment, or None (then orgs cannot store keys)."""
    try:
        return MasterKeys.from_env()
    except SecretsConfigError:
        return None
