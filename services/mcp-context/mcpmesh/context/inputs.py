"""Checking what callers send: each check raises a MeshException whose message says what is expected."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final, Literal, cast

import msgspec

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.proto.ids import InvalidIdentifier, validate_org_id

Access = Literal["read", "write"]

DEFAULT_NAMESPACE: Final = "default"
#: `system` and `system/...` are the global namespaces: readable by every org, writable with `admin`.
SYSTEM_NAMESPACE: Final = "system"
_SEGMENT = r"[a-z0-9][a-z0-9_.-]{0,63}"
_NAMESPACE_RE: Final = re.compile(rf"^{_SEGMENT}(?:/{_SEGMENT}){{0,7}}$")
_NAMESPACE_MAX: Final = 200
_TAG_RE: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_:./-]{0,63}$")
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]")
MAX_TITLE: Final = 200
MAX_TAGS: Final = 32
MAX_METADATA_BYTES: Final = 16 * 1024
MAX_METADATA_DEPTH: Final = 8
MAX_PAGE: Final = 100
#: The largest integer a caller may send: every JSON client represents it exactly (2**53 - 1).
MAX_INT: Final = 2**53 - 1
#: Integers stored in metadata must fit BSON's 64-bit integers.
_INT64: Final = range(-(2**63), 2**63)


def invalid(message: str) -> MeshException:
    return MeshException(ErrorCode.INVALID_REQUEST, message)


def _shown(value: object) -> str:
    return repr(value) if isinstance(value, str) and len(value) <= 60 else "<value>"


def check_namespace(value: object) -> str:
    if (
        not isinstance(value, str)
        or len(value) > _NAMESPACE_MAX
        or not _NAMESPACE_RE.fullmatch(value)
        or ".." in value
    ):
        raise invalid(
            f"invalid namespace {_shown(value)}: expected 1-8 '/'-separated segments of lowercase letters, "
            f"digits, '-', '_' or '.', each starting with a letter or digit (at most 64 characters each, "
            f"{_NAMESPACE_MAX} in all), e.g. 'default' or 'team/support'"
        )
    return value


def is_system_namespace(namespace: str) -> bool:
    return namespace == SYSTEM_NAMESPACE or namespace.startswith(SYSTEM_NAMESPACE + "/")


def check_title(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid("title must be a non-empty string")
    title = value.strip()
    if len(title) > MAX_TITLE or _CONTROL_RE.search(title):
        raise invalid(f"title must be at most {MAX_TITLE} characters with no control characters")
    return title


def check_tags(value: object) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_TAGS:
        raise invalid(f"tags must be a list of at most {MAX_TAGS} tags")
    tags: list[str] = []
    for tag in value:
        if not isinstance(tag, str) or not _TAG_RE.fullmatch(tag):
            raise invalid(
                f"invalid tag {_shown(tag)}: expected 1-64 letters, digits or '_', ':', '.', '/', '-' "
                "(not starting with a symbol other than '_')"
            )
        if tag not in tags:
            tags.append(tag)
    return tags


def check_tag(value: object) -> str:
    return check_tags([value])[0]


def check_metadata(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid("metadata must be a JSON object")
    _check_tree(value, 0)
    if len(msgspec.json.encode(value)) > MAX_METADATA_BYTES:
        raise invalid(f"metadata must be at most {MAX_METADATA_BYTES} bytes as JSON")
    return cast(dict[str, Any], value)


def _check_tree(value: object, depth: int) -> None:
    if depth > MAX_METADATA_DEPTH:
        raise invalid(f"metadata must be nested at most {MAX_METADATA_DEPTH} levels deep")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or not key or key.startswith("$") or "." in key:
                raise invalid(
                    f"invalid metadata key {_shown(key)}: keys must be non-empty, without '.' or a leading '$'"
                )
            _check_tree(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_tree(item, depth + 1)
    elif (isinstance(value, int) and not isinstance(value, bool) and value not in _INT64) or (
        isinstance(value, float) and not math.isfinite(value)
    ):
        raise invalid("metadata numbers must be finite, and integers must fit in 64 bits")


def check_org(value: object, field: str) -> str:
    try:
        return validate_org_id(value)
    except InvalidIdentifier as exc:
        raise invalid(f"{field}: {exc}") from None


def check_access(value: object) -> Access:
    if value not in ("read", "write"):
        raise invalid(f"access must be 'read' or 'write', not {_shown(value)}")
    return cast(Access, value)


def check_limit(value: object, default: int = 20) -> int:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_PAGE:
        raise invalid(f"limit must be an integer from 1 to {MAX_PAGE}")
    return value


def check_count(value: object, field: str, *, minimum: int = 1) -> int | None:
    """An optional integer from `minimum` to MAX_INT (None stays None)."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= MAX_INT:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise invalid(f"{field} must be {what} (at most {MAX_INT})")
    return value


def check_text(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise invalid("text must be a non-empty string of at most 200 characters")
    return value.strip()
