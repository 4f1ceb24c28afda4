"""The collection kinds this service declares to `mcpmesh.store`, with the indexes its queries use.

Per tenant (`<org>__<kind>`):
    contexts, contexts_cold   one document per context (hot / cold tier)
    entries, entries_cold     one document per entry (hot / cold tier)
    shares                    grants the org (as owner) has given on its contexts and namespaces
    grants                    pointers to grants other orgs gave this org: {_id: share id, owner, ...}
    counters                  {_id: "contexts", n}: the atomic context count checked against the tier
The sweep finds the orgs to visit by their `contexts` collection (`service.tenants`).
"""

from __future__ import annotations

from typing import Final

from mcpmesh.store import Index

_CONTEXT_INDEXES: Final = [
    Index(keys=[("updated_at", -1), ("_id", -1)]),
    Index(keys=[("namespace", 1), ("updated_at", -1), ("_id", -1)]),
    Index(keys=[("tags", 1), ("updated_at", -1)]),
]
_ENTRY_INDEXES: Final = [
    # Not unique here: the _id "<ctx_id>:<seq>" already makes (ctx_id, seq) unique.
    Index(keys=[("ctx_id", 1), ("seq", 1)]),
    Index(keys=[("ctx_id", 1), ("tok_start", 1)]),
    Index(keys=[("ctx_id", 1), ("r", 1)]),
    Index(keys=[("zipped", 1)], sparse=True),  # compressed entries, scanned by content search
]

STORE_KINDS: Final[dict[str, list[Index]]] = {
    "contexts": [
        *_CONTEXT_INDEXES,
        Index(keys=[("touched_at", 1)]),
        Index(keys=[("lock.at", 1)], sparse=True),
        Index(keys=[("pending.at", 1)], sparse=True),
    ],
    "contexts_cold": [*_CONTEXT_INDEXES, Index(keys=[("lock.at", 1)], sparse=True)],
    "entries": list(_ENTRY_INDEXES),
    "entries_cold": list(_ENTRY_INDEXES),
    "shares": [
        Index(keys=[("ctx_id", 1), ("grantee", 1)], sparse=True),
        Index(keys=[("namespace", 1), ("grantee", 1)], sparse=True),
        Index(keys=[("parent", 1)], sparse=True),
        Index(keys=[("expires_at", 1)], sparse=True),
    ],
    "grants": [
        Index(keys=[("ctx_id", 1)], sparse=True),
        Index(keys=[("owner", 1), ("namespace", 1)]),
    ],
    "counters": [],
}

#: The two storage tiers: (contexts kind, entries kind).
HOT: Final = ("contexts", "entries")
COLD: Final = ("contexts_cold", "entries_cold")
