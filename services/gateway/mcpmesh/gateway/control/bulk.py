"""Several updates in one MongoDB round trip (`bulk_write`, unordered).

The embedded store (mongomock) cannot build a bulk write with the installed pymongo (its
builder rejects pymongo's `sort` argument, before anything is written); there the updates
are applied one by one instead, with the same outcome.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, NamedTuple

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

DUPLICATE_KEY: Final = 11000

_no_bulk: set[type] = set()  # collection classes whose bulk_write cannot be used


class Update(NamedTuple):
    filter: Mapping[str, Any]
    update: Mapping[str, Any]
    upsert: bool = False


async def update_each(rows: Any, updates: Sequence[Update]) -> set[int]:
    """Apply every update (unordered); return the indexes of those refused with a duplicate
    key (an upsert whose filter did not match an existing `_id`). Other errors raise."""
    if not updates:
        return set()
    if type(rows) not in _no_bulk:
        ops = [UpdateOne(dict(u.filter), dict(u.update), upsert=u.upsert) for u in updates]
        try:
            await rows.bulk_write(ops, ordered=False)
            return set()
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            return {int(e["index"]) for e in errors}
        except TypeError:  # mongomock's bulk builder: nothing was written
            _no_bulk.add(type(rows))
    duplicates: set[int] = set()
    for i, u in enumerate(updates):
        try:
            await rows.update_one(dict(u.filter), dict(u.update), upsert=u.upsert)
        except DuplicateKeyError:
            duplicates.add(i)
    return duplicates
