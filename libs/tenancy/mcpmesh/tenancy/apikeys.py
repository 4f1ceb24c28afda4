"""API keys: `mm_<key id>_<secret>`. Only a hash is ever stored."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from mcpmesh.proto.ids import InvalidIdentifier

_KEY_RE = re.compile(r"^mm_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class ApiKey:
    key_id: str  # "key-" + 12 chars: safe to log and show
    secret: str  # the whole presented key: shown once at creation


def new_api_key() -> ApiKey:
    ident = secrets.token_hex(6)
    raw = f"mm_{ident}_{secrets.token_urlsafe(32)}"
    return ApiKey(key_id=f"key-{ident}", secret=raw)


def parse_api_key(raw: str) -> str:
    """The key id of a well-formed key; raises InvalidIdentifier (without echoing the key) otherwise."""
    match = _KEY_RE.fullmatch(raw.strip()) if isinstance(raw, str) else None
    if match is None:
        raise InvalidIdentifier("malformed API key: expected the 'mm_…' key issued by the admin API")
    return f"key-{match.group(1)}"


def hash_api_key(raw: str, pepper: bytes = b"") -> str:
    """Keys carry 256 bits of entropy, so a keyed SHA-256 is enough (no slow KDF needed)."""
    return hmac.new(pepper or b"mcpmesh", raw.strip().encode(), hashlib.sha256).hexdigest()


def key_matches(raw: str, stored_hash: str, pepper: bytes = b"") -> bool:
    return hmac.compare_digest(hash_api_key(raw, pepper), stored_hash)
