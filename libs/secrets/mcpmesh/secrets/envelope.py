"""AES-GCM envelope encryption: a fresh data key per secret, wrapped by a master key.

Both layers authenticate the org and the secret's name as associated data, so a sealed
value copied into another org's collection, or under another name, does not open.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mcpmesh.secrets.keys import KEY_BYTES, MasterKeys

_NONCE = 12


class SecretCorrupted(ValueError):
    """A sealed value failed authentication (tampered, moved, or the wrong master key)."""


@dataclass(frozen=True)
class Sealed:
    """What is stored: never the plaintext, never the bare data key."""

    kid: str  # master key that wrapped the data key
    wrapped_key: bytes  # nonce + AES-GCM(master, data key)
    ciphertext: bytes  # nonce + AES-GCM(data key, plaintext)


def _aad(org_id: str, name: str, layer: str) -> bytes:
    return f"mcpmesh-secret\0{layer}\0{org_id}\0{name}".encode()


def _encrypt(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _decrypt(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(sealed[:_NONCE], sealed[_NONCE:], aad)
    except (InvalidTag, ValueError):
        raise SecretCorrupted("a stored secret failed authentication: set it again") from None


def seal(keys: MasterKeys, org_id: str, name: str, plaintext: str) -> Sealed:
    data_key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
    return Sealed(
        kid=keys.active,
        wrapped_key=_encrypt(keys.key(keys.active), data_key, _aad(org_id, name, "key")),
        ciphertext=_encrypt(data_key, plaintext.encode(), _aad(org_id, name, "value")),
    )


def open_sealed(keys: MasterKeys, org_id: str, name: str, sealed: Sealed) -> str:
    data_key = _decrypt(keys.key(sealed.kid), sealed.wrapped_key, _aad(org_id, name, "key"))
    return _decrypt(data_key, sealed.ciphertext, _aad(org_id, name, "value")).decode()


def rewrap(keys: MasterKeys, org_id: str, name: str, sealed: Sealed) -> Sealed:
    """The same ciphertext with its data key wrapped by the active master key (key rotation)."""
    if sealed.kid == keys.active:
        return sealed
    data_key = _decrypt(keys.key(sealed.kid), sealed.wrapped_key, _aad(org_id, name, "key"))
    wrapped = _encrypt(keys.key(keys.active), data_key, _aad(org_id, name, "key"))
    return Sealed(kid=keys.active, wrapped_key=wrapped, ciphertext=sealed.ciphertext)
