"""Where a source's SAS URL is kept: the org's sealed secrets (`mcpmesh.secrets.TenantSecrets`).

The one place that builds the vault: when the kit hands handlers `call.secrets`/`job.secrets`
(MeshService(secrets=True)), this module is what switches to it. The master keys are loaded
once, by the service's lifespan (`MCPMESH_SECRETS_KEYS` or `MCPMESH_SECRETS_KEYS_FILE`).
"""

from __future__ import annotations

from mcpmesh.secrets import MasterKeys, TenantSecrets
from mcpmesh.store import TenantStore


def load_keys() -> MasterKeys:
    return MasterKeys.from_env()


def vault(tenant: TenantStore, keys: MasterKeys) -> TenantSecrets:
    """The secrets of the org `tenant` is scoped to (a handler's `call.store`, a job's `job.store`)."""
    return TenantSecrets(tenant, keys)


def secret_name(source_id: str) -> str:
    return f"source.{source_id}"
