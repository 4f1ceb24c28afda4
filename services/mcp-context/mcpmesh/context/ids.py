"""Context and share ids: `ctx-` / `shr-` plus 24 random base32 characters (120 bits).

Ids carry no owner org: another org learns nothing from holding one, and guessing is
useless. A grantee finds the owner through its own grant index (see sharing.py).
"""

from __future__ import annotations

import base64
import re
import secrets
from typing import Final

from mcpmesh.proto.errors import ErrorCode, MeshException

CONTEXT_PREFIX: Final = "ctx-"
SHARE_PREFIX: Final = "shr-"
_BODY = r"[a-z2-7]{24}"
CONTEXT_ID_RE: Final = re.compile(rf"^ctx-{_BODY}$")
SHARE_ID_RE: Final = re.compile(rf"^shr-{_BODY}$")


def _random_body() -> str:
    return base64.b32encode(secrets.token_bytes(15)).decode().lower()


def new_context_id() -> str:
    return CONTEXT_PREFIX + _random_body()


def new_share_id() -> str:
    return SHARE_PREFIX + _random_body()


def _shown(value: object) -> str:
    return repr(value) if isinstance(value, str) and len(value) <= 60 else "<value>"


def check_context_id(value: object) -> str:
    if not isinstance(value, str) or not CONTEXT_ID_RE.fullmatch(value):
        raise MeshException(
            ErrorCode.INVALID_REQUEST,
            f"invalid context id {_shown(value)}: expected 'ctx-' followed by 24 characters a-z, 2-7",
        )
    return value


def check_share_id(value: object) -> str:
    if not isinstance(value, str) or not SHARE_ID_RE.fullmatch(value):
        raise MeshException(
            ErrorCode.INVALID_REQUEST,
            f"invalid share id {_shown(value)}: expected 'shr-' followed by 24 characters a-z, 2-7",
        )
    return value
