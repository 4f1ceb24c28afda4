"""API keys: `mm_<key id>_<secret>`. Only a hash is ever stored.

A key may carry tags: short labels an org gives its keys (`support`, `team:billing`), never
secret, signed into the stamp so services can grant by them (mcp-rag's per-document access)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Final

from mcpmesh.proto.ids import InvalidIdentifier

_KEY_RE = re.compile(r"^mm_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$")
KEY_TAG_PATTERN: Final = r"^[a-z0-9][a-z0-9_.:-]{0,63}$"
_KEY_TAG_RE: Final = re.compile(KEY_TAG_PATTERN)
MAX_KEY_TAGS: Final = 16


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


def check_key_tags(tags: object) -> list[str]:
    """A key's tags, sorted and without repeats; raises InvalidIdentifier saying what is wrong."""
    if not isinstance(tags, list | tuple | set | frozenset):
        raise InvalidIdentifier(f'tags must be a list of at most {MAX_KEY_TAGS} labels, e.g. ["support"]')
    for tag in tags:
        if not isinstance(tag, str) or not _KEY_TAG_RE.fullmatch(tag):
            shown = tag if isinstance(tag, str) and len(tag) <= 70 else "<value>"
            raise InvalidIdentifier(
                f"invalid tag {shown!r}: 1-64 of lowercase letters, digits, '_', '.', ':' or '-', "
                "starting with a letter or digit"
            )
    unique = sorted(set(tags))
    if len(unique) > MAX_KEY_TAGS:
        raise InvalidIdentifier(f"a key holds at most {MAX_KEY_TAGS} tags, not {len(unique)}")
    return unique
