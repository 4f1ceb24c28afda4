"""Master keys: the keys that wrap every secret's own data key, with ids so they can rotate."""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_KID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
KEY_BYTES = 32  # AES-256


class SecretsConfigError(ValueError):
    """The master keys are missing or malformed; the message says what to set (never a key)."""


@dataclass(frozen=True)
class MasterKeys:
    """Key id -> 32-byte key; `active` seals new secrets, every listed key can still open old ones."""

    active: str
    keys: Mapping[str, bytes]

    def __post_init__(self) -> None:
        if self.active not in self.keys:
            raise SecretsConfigError("the active master key id is not among the keys")

    def __repr__(self) -> str:  # never print key material
        return f"MasterKeys(active={self.active!r}, ids={sorted(self.keys)!r})"

    def key(self, kid: str) -> bytes:
        try:
            return self.keys[kid]
        except KeyError:
            raise SecretsConfigError(
                f"a secret is sealed under master key {kid!r}, which is not configured: "
                "keep retired keys in MCPMESH_SECRETS_KEYS until `rewrap` has moved every secret"
            ) from None

    @classmethod
    def parse(cls, text: str) -> MasterKeys:
        """`kid:base64key` entries separated by commas or newlines; the first is the active one."""
        keys: dict[str, bytes] = {}
        for raw in re.split(r"[,\n]", text):
            entry = raw.strip()
            if not entry or entry.startswith("#"):
                continue
            kid, sep, encoded = entry.partition(":")
            if not sep or not _KID_RE.fullmatch(kid):
                raise SecretsConfigError(
                    "each master key entry must be '<id>:<base64 key>' with an id of 1-32 letters, "
                    "digits, '_' or '-' (generate one with `python -m mcpmesh.secrets new-key`)"
                )
            try:
                key = base64.urlsafe_b64decode(encoded.strip() + "=" * (-len(encoded.strip()) % 4))
            except (binascii.Error, ValueError):
                key = b""
            if len(key) != KEY_BYTES:
                raise SecretsConfigError(f"master key {kid!r} must be {KEY_BYTES} bytes, base64-encoded")
            if kid in keys:
                raise SecretsConfigError(f"master key id {kid!r} is listed twice")
            keys[kid] = key
        if not keys:
            raise SecretsConfigError("no master key given")
        return cls(active=next(iter(keys)), keys=keys)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MasterKeys:
        """`MCPMESH_SECRETS_KEYS` (the entries) or `MCPMESH_SECRETS_KEYS_FILE` (a mounted file of them)."""
        env = os.environ if environ is None else environ
        text = env.get("MCPMESH_SECRETS_KEYS")
        path = env.get("MCPMESH_SECRETS_KEYS_FILE")
        if not text and path:
            try:
                text = Path(path).read_text()
            except OSError:
                raise SecretsConfigError(f"MCPMESH_SECRETS_KEYS_FILE {path!r} cannot be read") from None
        if not text:
            raise SecretsConfigError(
                "tenant secrets need a master key: set MCPMESH_SECRETS_KEYS='<id>:<base64 32 bytes>' "
                "or MCPMESH_SECRETS_KEYS_FILE (./mesh up makes one in .mesh/secrets-keys)"
            )
        return cls.parse(text)


def new_master_key_entry(kid: str | None = None) -> str:
    """A fresh `kid:base64key` entry (for `.mesh/`, a Kubernetes Secret, ...)."""
    kid = kid or "k" + secrets.token_hex(4)
    if not _KID_RE.fullmatch(kid):
        raise SecretsConfigError("a key id is 1-32 letters, digits, '_' or '-'")
    return f"{kid}:{base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode().rstrip('=')}"
