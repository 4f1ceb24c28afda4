"""Tenant secrets: per-org credentials sealed at rest (AES-GCM envelope), write-only to clients."""

from mcpmesh.secrets.envelope import SecretCorrupted
from mcpmesh.secrets.keys import MasterKeys, SecretsConfigError, new_master_key_entry
from mcpmesh.secrets.vault import (
    SECRETS_KIND,
    SECRETS_KINDS,
    InvalidSecret,
    SecretInfo,
    SecretValue,
    TenantSecrets,
    validate_secret_name,
)

__all__ = [
    "SECRETS_KIND",
    "SECRETS_KINDS",
    "InvalidSecret",
    "MasterKeys",
    "SecretCorrupted",
    "SecretInfo",
    "SecretValue",
    "SecretsConfigError",
    "TenantSecrets",
    "new_master_key_entry",
    "validate_secret_name",
]
