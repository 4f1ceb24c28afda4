"""Several updates in one MongoDB round trip (`bulk_write`, unordered)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, NamedTuple

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

DUPLICATE_KEY: Final = 11000


class Update(NamedTuple):
    filter: Mapping[str, Any]
    update: Mapping[str, Any]
    upsert: bool = False


async def update_each(rows: Any, updates: Sequence[Update]) -> set[int]:
    """Apply every update (unordered); return the indexes of those refused with a duplicate
    key (an upsert whose filter did not match an existing `_id`). Other errors raise."""
    if not updates:
        return set()
    ops = [UpdateOne(dict(u.filter), dict(u.update), upsert=u.upsert) for u in updates]
    try:
        await rows.bulk_write(ops, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        return {int(e["index"]) for e in errors}
    return set()
