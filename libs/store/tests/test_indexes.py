from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mcpmesh.store import Index
from mcpmesh.store.indexes import IndexEnsurer


class SlowCollection:
    """Stands in for a motor collection whose index creation takes a while (yields to the loop)."""

    def __init__(self, name: str, failures: int = 0) -> None:
        self.name = name
        self.calls: list[list[Any]] = []
        self._failures = failures

    async def create_indexes(self, models: list[Any]) -> list[str]:
        await asyncio.sleep(0.01)
        self.calls.append(models)
        if self._failures:
            self._failures -= 1
            raise RuntimeError("server unavailable")
        return [m.document["name"] for m in models]


def test_index_model_carries_options() -> None:
    doc = Index(keys=[("ctx_id", 1)], unique=True, name="ctx", expire_after_seconds=60).model().document
    assert doc["key"] == {"ctx_id": 1}
    assert doc["unique"] is True
    assert doc["name"] == "ctx"
    assert doc["expireAfterSeconds"] == 60
    compound = Index(keys=[("namespace", 1), ("updated_at", -1)]).model().document
    assert list(compound["key"].items()) == [("namespace", 1), ("updated_at", -1)]
    assert "unique" not in compound


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"keys": []}, "at least one key"),
        ({"keys": [("a",)]}, "must be a \\(field, direction\\) pair"),
        ({"keys": [("a", 1), ("b", 1)], "expire_after_seconds": 5}, "exactly one key"),
    ],
)
def test_bad_index_declarations_are_rejected(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Index(**kwargs)


async def test_concurrent_first_uses_create_indexes_once() -> None:
    ensurer = IndexEnsurer()
    collection = SlowCollection("org-ab__contexts")
    indexes = [Index(keys=[("a", 1)]), Index(keys=[("b", 1)], unique=True)]
    await asyncio.gather(*(ensurer.ensure(collection, indexes) for _ in range(20)))  # type: ignore[arg-type]
    await ensurer.ensure(collection, indexes)  # type: ignore[arg-type]
    assert len(collection.calls) == 1
    assert len(collection.calls[0]) == 2


async def test_a_failed_creation_is_retried_on_next_use() -> None:
    ensurer = IndexEnsurer()
    collection = SlowCollection("org-ab__contexts", failures=1)
    indexes = [Index(keys=[("a", 1)])]
    with pytest.raises(RuntimeError, match="server unavailable"):
        await ensurer.ensure(collection, indexes)  # type: ignore[arg-type]
    await ensurer.ensure(collection, indexes)  # type: ignore[arg-type]
    await ensurer.ensure(collection, indexes)  # type: ignore[arg-type]
    assert len(collection.calls) == 2


async def test_forget_makes_the_next_use_create_again() -> None:
    ensurer = IndexEnsurer()
    collection = SlowCollection("org-ab__contexts")
    indexes = [Index(keys=[("a", 1)])]
    await ensurer.ensure(collection, indexes)  # type: ignore[arg-type]
    ensurer.forget(["org-ab__contexts"])
    await ensurer.ensure(collection, indexes)  # type: ignore[arg-type]
    assert len(collection.calls) == 2
