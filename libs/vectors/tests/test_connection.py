from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mcpmesh.vectors import QdrantPathInUse, QdrantSettings, Vectors, connect_qdrant
from mcpmesh.vectors.connection import client_options


def entries(path: Path) -> list[Path]:
    return list(path.iterdir())


def test_settings_from_env() -> None:
    assert QdrantSettings.from_env({}) == QdrantSettings(url=None, path=".mesh/qdrant", api_key=None)
    env = {"QDRANT_URL": "http://qdrant:6333", "QDRANT_PATH": "/data/q", "QDRANT_API_KEY": "k"}
    assert QdrantSettings.from_env(env) == QdrantSettings(
        url="http://qdrant:6333", path="/data/q", api_key="k"
    )


def test_a_url_selects_the_server_and_wins_over_a_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QDRANT_PATH", "/from-env")
    assert client_options("http://qdrant:6333", path="/ignored") == {"url": "http://qdrant:6333"}
    assert client_options("http://qdrant:6333", api_key="k") == {"url": "http://qdrant:6333", "api_key": "k"}
    assert client_options(None) == {"path": "/from-env"}
    assert client_options(None, path=":memory:") == {"location": ":memory:"}
    monkeypatch.delenv("QDRANT_PATH")
    assert client_options(None) == {"path": ".mesh/qdrant"}


async def test_local_mode_persists_on_disk(tmp_path: Path) -> None:
    path = str(tmp_path / "q")
    client = connect_qdrant(None, path=path)
    await Vectors(client).for_tenant("org-abc").ensure_kb("docs", 3)
    await client.close()
    reopened = connect_qdrant(None, path=path)
    try:
        assert await Vectors(reopened).for_tenant("org-abc").list_kbs() == ["docs"]
    finally:
        await reopened.close()


async def test_path_defaults_to_qdrant_path_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QDRANT_PATH", str(tmp_path / "from-env"))
    client = connect_qdrant(None)
    try:
        assert client.init_options["path"] == str(tmp_path / "from-env")
        await Vectors(client).for_tenant("org-abc").ensure_kb("docs", 2)
        assert (tmp_path / "from-env").is_dir()
    finally:
        await client.close()


async def test_memory_mode_keeps_nothing_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("QDRANT_PATH", raising=False)
    client = connect_qdrant(None, path=":memory:")
    try:
        assert await Vectors(client).for_tenant("org-abc").ensure_kb("docs", 2) is True
        assert client.init_options["location"] == ":memory:"
        assert entries(tmp_path) == []
    finally:
        await client.close()


def test_a_second_client_on_a_local_path_is_refused_clearly(tmp_path: Path) -> None:
    first = connect_qdrant(None, path=str(tmp_path / "q"))
    with pytest.raises(QdrantPathInUse, match=r"in use by another process.*QDRANT_URL"):
        connect_qdrant(None, path=str(tmp_path / "q"))
    asyncio.run(first.close())
