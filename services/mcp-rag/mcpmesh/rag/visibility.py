"""Per-document access control: a document may be visible only to some API keys of the kb's
owner (by key id), to keys holding some scope (e.g. `rag:write`: editors only) and/or to the
owner's keys carrying some tag (e.g. `support`).

One rule: a document's `acl` (in its record and on each of its chunks) lists principals — `*`
(everyone who can read the kb: the default), `key:<key id>`, `scope:<scope>`, `tag:<tag>` —
and a caller sees it when it holds at least one of them. A caller's principals are `*`, its key
id, every scope its key covers and, when it is of the kb's owner org, its key's tags (tags are
an org's own labels: another org's key, through a share, never matches one). The owner org's
`admin` scope sees every document of its kbs, so it can always manage them. A document a
caller cannot see is "not found" like one that does not exist.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from mcpmesh.proto.ids import SERVICES, InvalidIdentifier
from mcpmesh.rag.access import Kb, invalid
from mcpmesh.service import Call
from mcpmesh.tenancy.apikeys import check_key_tags
from mcpmesh.tenancy.scopes import covers

EVERYONE: Final = "*"
#: The scopes a document may be limited to: what a key can hold.
SCOPES: Final = tuple(f"{service}:{access}" for service in SERVICES for access in ("read", "write"))
MAX_PRINCIPALS: Final = 32


class VisibleTo(TypedDict, total=False):
    keys: list[str]
    scopes: list[str]
    tags: list[str]


def acl_of(visible_to: VisibleTo | None) -> list[str]:
    if not visible_to:
        return [EVERYONE]
    keys = visible_to.get("keys") or []
    scopes = visible_to.get("scopes") or []
    tags = visible_to.get("tags") or []
    if (not keys and not scopes and not tags) or len(keys) + len(scopes) + len(tags) > MAX_PRINCIPALS:
        raise invalid(f"visible_to needs 1-{MAX_PRINCIPALS} key ids, scopes and/or tags (or leave it out)")
    for scope in scopes:
        if scope not in SCOPES:
            raise invalid(f"visible_to scope {scope[:40]!r}: use '<service>:read' or '<service>:write'")
    if not all(isinstance(k, str) and 0 < len(k) <= 100 for k in keys):
        raise invalid("visible_to keys are API key ids (the 'sub' of a key)")
    try:
        tags = check_key_tags(tags)
    except InvalidIdentifier as exc:
        raise invalid(f"visible_to tags are API key tags: {exc}") from None
    return sorted({f"key:{k}" for k in keys} | {f"scope:{s}" for s in scopes} | {f"tag:{t}" for t in tags})


def principals(call: Call, kb: Kb) -> list[str] | None:
    """The caller's principals in `kb`; None: it sees every document (the owner org's admin)."""
    stamp = call.stamp
    own = call.org_id == kb.owner
    if own and covers(stamp.scopes, "admin"):
        return None
    tags = sorted(call.key_tags) if own else []
    return [
        EVERYONE,
        f"key:{stamp.sub}",
        *(f"scope:{s}" for s in SCOPES if covers(stamp.scopes, s)),
        *(f"tag:{t}" for t in tags),
    ]


def chunk_filter(call: Call, kb: Kb) -> dict[str, Any]:
    """The payload filter (libs/vectors) keeping the chunks of documents the caller may see."""
    held = principals(call, kb)
    return {} if held is None else {"acl": held}


def mongo_filter(call: Call, kb: Kb) -> dict[str, Any]:
    held = principals(call, kb)
    return {} if held is None else {"acl": {"$in": held}}


def sees(call: Call, kb: Kb) -> Callable[[dict[str, Any]], bool]:
    """Whether the caller may see a document record of `kb`."""
    held = principals(call, kb)
    return lambda doc: held is None or bool(set(doc.get("acl", [EVERYONE])) & set(held))


def visible_to_view(acl: list[str]) -> VisibleTo | None:
    if acl == [EVERYONE]:
        return None
    return {
        "keys": [p[4:] for p in acl if p.startswith("key:")],
        "scopes": [p[6:] for p in acl if p.startswith("scope:")],
        "tags": [p[4:] for p in acl if p.startswith("tag:")],
    }
