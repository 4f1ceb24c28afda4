"""The vectors tests run on a Qdrant server when QDRANT_URL is set, else in local mode twice: on
disk and in memory (the kit's `qdrant` fixture covers only the first)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mcpmesh.vectors import QdrantConnection, connect_qdrant

WHERE = ["server"] if os.environ.get("QDRANT_URL") else ["path", ":memory:"]


@pytest.fixture(params=WHERE)
async def qdrant(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[QdrantConnection]:
    path = ":memory:" if request.param == ":memory:" else str(tmp_path / "qdrant")
    client = connect_qdrant(os.environ.get("QDRANT_URL"), path=path)
    yield client
    await client.close()
