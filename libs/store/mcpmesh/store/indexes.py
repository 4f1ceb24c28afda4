"""Index declarations, and creating them once per collection per process."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo import IndexModel

from mcpmesh.store.connection import Collection


@dataclass(frozen=True)
class Index:
    """One index: `keys` as (field, direction) pairs, e.g. `[("namespace", 1), ("updated_at", -1)]`."""

    keys: Sequence[tuple[str, int | str]]
    unique: bool = False
    name: str | None = None
    sparse: bool = False
    #: TTL index: documents expire this many seconds after the (date) field's value.
    expire_after_seconds: int | None = None
    partial_filter: Mapping[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("an index needs at least one key")
        for key in self.keys:
            if not (isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], str) and key[0]):
                raise ValueError(f"index key {key!r} must be a (field, direction) pair")
        if self.expire_after_seconds is not None and len(self.keys) != 1:
            raise ValueError("a TTL index (expire_after_seconds) must have exactly one key")

    def model(self) -> IndexModel:
        options: dict[str, Any] = {}
        if self.unique:
            options["unique"] = True
        if self.name:
            options["name"] = self.name
        if self.sparse:
            options["sparse"] = True
        if self.expire_after_seconds is not None:
            options["expireAfterSeconds"] = self.expire_after_seconds
        if self.partial_filter is not None:
            options["partialFilterExpression"] = dict(self.partial_filter)
        return IndexModel(list(self.keys), **options)


class IndexEnsurer:
    """Creates a collection's declared indexes on its first use in this process.

    Concurrent first uses wait on one per-collection lock, so creation runs once; a
    failed creation is not remembered and is retried on the next use.
    """

    def __init__(self) -> None:
        self._done: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    async def ensure(self, collection: Collection, indexes: Sequence[Index]) -> None:
        name = collection.name
        if name in self._done:
            return
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            if name in self._done:
                return
            if indexes:
                await collection.create_indexes([index.model() for index in indexes])
            self._done.add(name)

    def forget(self, names: Sequence[str]) -> None:
        """After a drop: the next use of these collections creates their indexes again."""
        for name in names:
            self._done.discard(name)
            self._locks.pop(name, None)
