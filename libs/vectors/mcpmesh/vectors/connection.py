"""Connecting to Qdrant: a server by URL, else local mode on disk (or in memory)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias, TypedDict

from qdrant_client import AsyncQdrantClient

from mcpmesh.vectors.local import LocalQdrant

DEFAULT_PATH = ".mesh/qdrant"
MEMORY = ":memory:"
#: What `connect_qdrant` returns: a server's client, or local mode run off the event loop.
QdrantConnection: TypeAlias = AsyncQdrantClient | LocalQdrant


class ClientOptions(TypedDict, total=False):
    url: str
    api_key: str
    location: str
    path: str


@dataclass(frozen=True)
class QdrantSettings:
    """`QDRANT_URL` (unset: local mode), `QDRANT_PATH` (default `.mesh/qdrant`), `QDRANT_API_KEY`."""

    url: str | None = None
    path: str = DEFAULT_PATH
    api_key: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> QdrantSettings:
        env = os.environ if environ is None else environ
        return cls(
            url=env.get("QDRANT_URL") or None,
            path=env.get("QDRANT_PATH") or DEFAULT_PATH,
            api_key=env.get("QDRANT_API_KEY") or None,
        )

    def connect(self) -> QdrantConnection:
        return connect_qdrant(self.url, path=self.path, api_key=self.api_key)


def connect_qdrant(
    url: str | None, *, path: str | None = None, api_key: str | None = None
) -> QdrantConnection:
    """A server client (AsyncQdrantClient) when `url` is given; else local mode at `path`
    (default `QDRANT_PATH` or `.mesh/qdrant`), or in memory when `path` is `:memory:`, on a
    thread of its own (LocalQdrant, see mcpmesh.vectors.local).

    Local mode locks its directory: one client per path at a time, so share the client; a
    second one (another process) raises QdrantPathInUse.
    """
    options = client_options(url, path=path, api_key=api_key)
    if url:
        return AsyncQdrantClient(**options)
    try:
        return LocalQdrant(**options)
    except RuntimeError as exc:
        if "already accessed" not in str(exc):
            raise
        raise QdrantPathInUse(options.get("path", "")) from None


class QdrantPathInUse(RuntimeError):
    """Local mode's directory is held by another process (one replica per path)."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"Qdrant local mode at QDRANT_PATH={path} is in use by another process: local mode serves one "
            "replica per directory; stop the other one, give this one another QDRANT_PATH, or set QDRANT_URL "
            "to a Qdrant server to run several replicas"
        )


def client_options(url: str | None, *, path: str | None = None, api_key: str | None = None) -> ClientOptions:
    """The client arguments `connect_qdrant` uses."""
    if url:
        return {"url": url, "api_key": api_key} if api_key else {"url": url}
    where = path or os.environ.get("QDRANT_PATH") or DEFAULT_PATH
    if where == MEMORY:
        return {"location": MEMORY}
    return {"path": where}
