"""Opaque pagination cursors, bound to the query that produced them.

A cursor is base64url(JSON [version, query hash, sort value, last id]). It carries only a
position in the caller's own results (every query is tenant-scoped anyway); the query
hash makes a cursor from another query, or an edited one, fail with a clear error.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any, Final

import msgspec

from mcpmesh.context.clock import MAX_EPOCH_MS
from mcpmesh.context.inputs import invalid
from mcpmesh.proto.errors import MeshException

_VERSION: Final = 1
_MAX_LENGTH: Final = 512


def query_hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def encode_cursor(binding: str, sort_value: int, last_id: str) -> str:
    raw = msgspec.json.encode([_VERSION, binding, sort_value, last_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _bad_cursor() -> MeshException:
    return invalid(
        "invalid cursor: pass the next_cursor of a previous call with the same filters, or no cursor"
    )


def decode_cursor(value: str, binding: str, id_pattern: re.Pattern[str] | None = None) -> tuple[int, str]:
    """(sort value, last id) of a cursor made by `encode_cursor` for the same query; the id must
    match `id_pattern` when given."""
    if not isinstance(value, str) or not value or len(value) > _MAX_LENGTH:
        raise _bad_cursor()
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        decoded = msgspec.json.decode(raw)
    except (ValueError, msgspec.DecodeError):
        raise _bad_cursor() from None
    if (
        not isinstance(decoded, list)
        or len(decoded) != 4
        or decoded[0] != _VERSION
        or not isinstance(decoded[2], int)
        or isinstance(decoded[2], bool)
        or not 0 <= decoded[2] <= MAX_EPOCH_MS  # a plausible epoch-ms (or 0)
        or not isinstance(decoded[3], str)
    ):
        raise _bad_cursor()
    if decoded[1] != binding:
        raise invalid(
            "this cursor belongs to a different query: repeat the same filters, or start without a cursor"
        )
    if id_pattern is not None and not id_pattern.fullmatch(decoded[3]):
        raise _bad_cursor()
    return decoded[2], decoded[3]
