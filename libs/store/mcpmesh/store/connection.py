"""Connecting to MongoDB: a real server by URL, else an in-process mongomock-motor database."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorCollection, AsyncIOMotorDatabase

Database: TypeAlias = AsyncIOMotorDatabase[dict[str, Any]]
Collection: TypeAlias = AsyncIOMotorCollection[dict[str, Any]]

DEFAULT_DATABASE = "mcpmesh"

_embedded_client: AsyncIOMotorClient[dict[str, Any]] | None = None


@dataclass(frozen=True)
class MongoSettings:
    """`MONGODB_URL` (unset: embedded) and `MONGODB_DATABASE` (default `mcpmesh`)."""

    url: str | None = None
    database: str = DEFAULT_DATABASE

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MongoSettings:
        env = os.environ if environ is None else environ
        database = env.get("MONGODB_DATABASE") or DEFAULT_DATABASE
        return cls(url=env.get("MONGODB_URL") or None, database=database)

    def connect(self) -> Database:
        return connect_database(self.url, self.database)


def connect_database(url: str | None, name: str = DEFAULT_DATABASE) -> Database:
    """A motor database handle: a server when `url` is given, else the embedded one.

    The embedded client is shared by the whole process, like a server is shared by
    everyone connecting to it, so components wired together in one process see the
    same data. It is not persistent. Datetimes come back timezone-aware (UTC) either way.
    """
    if not name:
        raise ValueError("MongoDB database name must not be empty")
    if url:
        client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(url, tz_aware=True)
        return client.get_database(name)
    return _embedded().get_database(name)


def _embedded() -> AsyncIOMotorClient[dict[str, Any]]:
    global _embedded_client
    if _embedded_client is None:
        from mongomock_motor import AsyncMongoMockClient

        _embedded_client = AsyncMongoMockClient(tz_aware=True)
    return _embedded_client
