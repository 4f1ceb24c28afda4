"""What callers see of a context document."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcpmesh.context.clock import iso
from mcpmesh.context.grants import Grant


def committed_counts(doc: Mapping[str, Any]) -> tuple[int, int]:
    """(entries, tokens) written and finished: reserved minus in-flight appends and holes."""
    pending = doc.get("pending") or ()
    entries = (
        int(doc.get("next_seq", 0)) - int(doc.get("hole_entries", 0)) - sum(int(p["n"]) for p in pending)
    )
    tokens = (
        int(doc.get("token_total", 0)) - int(doc.get("hole_tokens", 0)) - sum(int(p["t"]) for p in pending)
    )
    return entries, tokens


def context_view(
    doc: Mapping[str, Any], *, role: str, grant: Grant | None = None, storage: str | None = None
) -> dict[str, Any]:
    entries, tokens = committed_counts(doc)
    view: dict[str, Any] = {
        "ctx_id": doc["_id"],
        "namespace": doc["namespace"],
        "title": doc["title"],
        "tags": list(doc.get("tags", [])),
        "metadata": dict(doc.get("metadata", {})),
        "created_at": iso(doc.get("created_at")),
        "updated_at": iso(doc.get("updated_at")),
        "entry_count": entries,
        "token_total": tokens,
        "access": role,
    }
    if storage is not None:
        view["storage"] = storage
    if grant is not None:
        view["share_id"] = grant.share_id
        view["expires_at"] = iso(grant.expires_at)
        attribution = grant.attribution()
        if attribution is not None:
            view["attribution"] = attribution
    return view
