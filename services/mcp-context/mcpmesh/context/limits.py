"""The per-org context count, kept in one counter document so the tier's cap holds under concurrency.

`<org>__counters` {_id: "contexts", n}: a create takes a slot with one conditional
increment (`n < max_contexts`) before it writes the context, and gives it back if the
write fails; a delete gives it back after the context is gone. A crash between the two
steps of a create can only leave the count one too high (never lets an org exceed its cap).
"""

from __future__ import annotations

import contextlib
from typing import Final

from pymongo.errors import DuplicateKeyError

from mcpmesh.context.app import ContextApp
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.store import TenantStore

_CONTEXTS: Final = "contexts"


async def take_context_slot(app: ContextApp, owner: TenantStore, max_contexts: int) -> None:
    counters = await owner.collection("counters")
    with contextlib.suppress(DuplicateKeyError):  # two first creates raced: the other one inserted it
        await counters.update_one({"_id": _CONTEXTS}, {"$setOnInsert": {"n": 0}}, upsert=True)
    taken = await counters.update_one({"_id": _CONTEXTS, "n": {"$lt": max_contexts}}, {"$inc": {"n": 1}})
    if not taken.modified_count:
        raise MeshException(
            ErrorCode.LIMIT_EXCEEDED,
            f"the limit of {max_contexts} contexts for this org is reached: delete contexts or move to a higher tier",
        )


async def release_context_slot(app: ContextApp, owner: TenantStore) -> None:
    counters = await owner.collection("counters")
    await counters.update_one({"_id": _CONTEXTS, "n": {"$gt": 0}}, {"$inc": {"n": -1}})


async def context_count(app: ContextApp, owner: TenantStore) -> int:
    counters = await owner.collection("counters")
    doc = await counters.find_one({"_id": _CONTEXTS})
    return int(doc["n"]) if doc else 0
