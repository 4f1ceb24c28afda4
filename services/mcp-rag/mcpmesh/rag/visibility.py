"""Per-document access control: a document may be visible only to some API keys of the kb's
owner (by key id) and/or to keys holding some scope (e.g. `rag:write`: editors only).

A document's `acl` (in its record and on each of its chunks) lists principals: `*` (everyone
who can read the kb: the default), `key:<key id>`, `scope:<scope>`. A caller's principals are
`*`, its key id and every scope its key covers; it sees a document when they meet. A
document it cannot see is "not found" like one that does not exist.
"""

from __future__ import annotations

from typing import Any, Final

from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from mcpmesh.proto.ids import SERVICES
from mcpmesh.rag.access import invalid
from mcpmesh.service import Call
from mcpmesh.tenancy.scopes import covers

EVERYONE: Final = "*"
#: The scopes a document may be limited to: what a key can hold.
SCOPES: Final = tuple(f"{service}:{access}" for service in SERVICES for access in ("read", "write"))
MAX_PRINCIPALS: Final = 32


class VisibleTo(TypedDict, total=False):
    keys: list[str]
    scopes: list[str]


def acl_of(visible_to: VisibleTo | None) -> list[str]:
    if not visible_to:
        return [EVERYONE]
    keys = visible_to.get("keys") or []
    scopes = visible_to.get("scopes") or []
    if (not keys and not scopes) or len(keys) + len(scopes) > MAX_PRINCIPALS:
        raise invalid(f"visible_to needs 1-{MAX_PRINCIPALS} key ids and/or scopes (or leave it out)")
    for scope in scopes:
        if scope not in SCOPES:
            raise invalid(f"visible_to scope {scope[:40]!r}: use '<service>:read' or '<service>:write'")
    if not all(isinstance(k, str) and 0 < len(k) <= 100 for k in keys):
        raise invalid("visible_to keys are API key ids (the 'sub' of a key)")
    return sorted({f"key:{k}" for k in keys} | {f"scope:{s}" for s in scopes})


def principals(call: Call) -> list[str]:
    stamp = call.stamp
    return [EVERYONE, f"key:{stamp.sub}", *(f"scope:{s}" for s in SCOPES if covers(stamp.scopes, s))]


def mongo_filter(call: Call) -> dict[str, Any]:
    return {"acl": {"$in": principals(call)}}


def visible(call: Call, doc: dict[str, Any]) -> bool:
    return bool(set(doc.get("acl", [EVERYONE])) & set(principals(call)))


def visible_to_view(acl: list[str]) -> VisibleTo | None:
    if acl == [EVERYONE]:
        return None
    return {
        "keys": [p[4:] for p in acl if p.startswith("key:")],
        "scopes": [p[6:] for p in acl if p.startswith("scope:")],
    }
