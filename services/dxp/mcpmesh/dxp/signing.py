"""The epi-hmac scheme of the DXP Deployment API: the client signs, the sandbox verifies.

`Authorization: epi-hmac {clientKey}:{timestamp}:{nonce}:{signature}` where the signature is
base64(HMAC-SHA256(base64-decoded secret, clientKey + METHOD + pathAndQuery + timestamp + nonce
+ base64(MD5(body)))), the timestamp Unix milliseconds, the nonce a UUID without hyphens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from typing import Final

SCHEME: Final = "epi-hmac"


class BadSecret(ValueError):
    """The client secret is not base64 text."""


def decode_secret(secret_b64: str) -> bytes:
    try:
        return base64.b64decode(secret_b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadSecret("the client secret must be base64 text, as the DXP portal shows it") from None


def signature(
    client_key: str, secret: bytes, method: str, path_and_query: str, timestamp: str, nonce: str, body: bytes
) -> str:
    body_hash = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
    message = f"{client_key}{method.upper()}{path_and_query}{timestamp}{nonce}{body_hash}"
    return base64.b64encode(hmac.new(secret, message.encode(), hashlib.sha256).digest()).decode()


def authorization(
    client_key: str, secret_b64: str, method: str, path_and_query: str, body: bytes = b""
) -> str:
    """The Authorization header value for one request (a fresh timestamp and nonce)."""
    timestamp = str(int(time.time() * 1000))
    nonce = uuid.uuid4().hex
    sig = signature(client_key, decode_secret(secret_b64), method, path_and_query, timestamp, nonce, body)
    return f"{SCHEME} {client_key}:{timestamp}:{nonce}:{sig}"


@dataclass(frozen=True)
class Signed:
    client_key: str
    timestamp_ms: int
    nonce: str
    signature: str


def parse(header: str) -> Signed | None:
    """The parts of an epi-hmac Authorization header; None when it is not one."""
    scheme, _, rest = header.partition(" ")
    parts = rest.split(":")
    if scheme != SCHEME or len(parts) != 4 or not all(parts) or not parts[1].isdigit():
        return None
    return Signed(parts[0], int(parts[1]), parts[2], parts[3])


def verify(signed: Signed, secret_b64: str, method: str, path_and_query: str, body: bytes) -> bool:
    expected = signature(
        signed.client_key,
        decode_secret(secret_b64),
        method,
        path_and_query,
        str(signed.timestamp_ms),
        signed.nonce,
        body,
    )
    return hmac.compare_digest(expected, signed.signature)
