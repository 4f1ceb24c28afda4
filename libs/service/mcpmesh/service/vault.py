"""Tenant secrets in the kit: `MeshService(..., secrets=True)`.

The service declares the `secrets` store kind, loads the master keys at start (no key: it
stops there, saying what to set), hands its handlers the caller's org's vault (`call.secrets`,
`job.secrets`) and gets three tools needing `<service>:admin`: `secret_set`, `secrets` and
`secret_delete`. No tool ever returns a value; what may be read back is `SecretInfo`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from mcp.server.mcpserver import Context

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.secrets import (
    SECRETS_KIND,
    SECRETS_KINDS,
    InvalidSecret,
    MasterKeys,
    TenantSecrets,
)
from mcpmesh.service.call import call_of
from mcpmesh.store import TenantStore
from mcpmesh.telemetry.logs import get_logger

if TYPE_CHECKING:
    from mcpmesh.service.server import MeshService
    from mcpmesh.service.settings import ServiceSettings

log = get_logger("mcpmesh.service.secrets")

#: Key of a tool's `_meta` entry listing arguments that carry secrets (never logged or shown).
TOOL_SECRET_ARGS_META: Final = "mcpmesh/secret_args"
#: Key of the nats.micro metadata entry saying whether a service keeps secrets ("true"/"false").
SECRETS_METADATA: Final = "mcpmesh_secrets"
#: The tools the kit adds to a service that keeps tenant secrets.
SECRET_TOOLS: Final = ("secret_set", "secrets", "secret_delete")


def load_master_keys(settings: ServiceSettings) -> MasterKeys:
    """The master keys from the settings (`MCPMESH_SECRETS_KEYS` or `_FILE`); SecretsConfigError
    says what to set when there are none or they are malformed."""
    return MasterKeys.from_env(
        {
            "MCPMESH_SECRETS_KEYS": settings.secrets_keys or "",
            "MCPMESH_SECRETS_KEYS_FILE": settings.secrets_keys_file or "",
        }
    )


def vault_of(service: MeshService, tenant: TenantStore) -> TenantSecrets:
    """The secrets of the org `tenant` is scoped to (a handler's `call.secrets` / `job.secrets`)."""
    keys = service.master_keys
    if keys is None:
        raise MeshException(
            ErrorCode.INTERNAL,
            f"service {service.name} keeps no tenant secrets: declare MeshService(..., secrets=True)",
        )
    return TenantSecrets(tenant, keys)


def enable_secrets(service: MeshService) -> None:
    """Declare the `secrets` kind and register the kit's secret tools on `service`."""
    if SECRETS_KIND in service.store_kinds:
        raise ValueError(f"store kind {SECRETS_KIND!r} is reserved for tenant secrets (secrets=True)")
    service.store_kinds.update(SECRETS_KINDS)
    admin = f"{service.name}:admin"
    # What set and delete do: overwrite or remove, the same again changes nothing more.
    changes: dict[str, Any] = {"read_only": False, "idempotent": True, "destructive": True}

    @service.tool(
        scope=admin, name="secret_set", open_world=False, meta={TOOL_SECRET_ARGS_META: ["value"]}, **changes
    )
    async def secret_set(name: str, value: str, ctx: Context) -> dict[str, Any]:
        """Store, or replace, one of this organization's secrets (e.g. an upstream API key).
        The value is sealed and never shown again: the answer and `secrets` give its name,
        a fingerprint, its last four characters (for values of 16+) and when it was set."""
        with _refused():
            info = await call_of(ctx).secrets.put(name, value)
        log.info("secret set", secret=info.name, fingerprint=info.fingerprint)
        return info.to_dict()

    @service.tool(access="read", scope=admin, name="secrets", open_world=False)
    async def secrets(ctx: Context) -> dict[str, Any]:
        """This organization's secrets of this service, by name: fingerprint, last four
        characters, master key id and times. Never a value."""
        infos = await call_of(ctx).secrets.infos()
        return {"secrets": [info.to_dict() for info in infos]}

    @service.tool(scope=admin, name="secret_delete", open_world=False, **changes)
    async def secret_delete(name: str, ctx: Context) -> dict[str, Any]:
        """Delete one of this organization's secrets; deleting one that is not there changes
        nothing (`deleted: false`)."""
        with _refused():
            deleted = await call_of(ctx).secrets.delete(name)
        if deleted:
            log.info("secret deleted", secret=name)
        return {"name": name, "deleted": deleted}


@contextmanager
def _refused() -> Iterator[None]:
    """A name or value the vault refuses is the caller's `invalid_request` (its message names
    the secret, never the value)."""
    try:
        yield
    except InvalidSecret as exc:
        raise MeshException(ErrorCode.INVALID_REQUEST, str(exc)) from None
