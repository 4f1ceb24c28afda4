"""Connecting to MongoDB: a server by URL (a real MongoDB, or the embedded SecantusDB of `./mesh up`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorCollection, AsyncIOMotorDatabase

Database: TypeAlias = AsyncIOMotorDatabase[dict[str, Any]]
Collection: TypeAlias = AsyncIOMotorCollection[dict[str, Any]]

DEFAULT_DATABASE = "mcpmesh"

#: What to do when no server was configured: there is no in-process fallback.
MISSING_URL: Final = (
    "MONGODB_URL is not set: run the platform with ./mesh up (it starts the embedded store and "
    "passes its URL, also written to .mesh/dev.json), or set MONGODB_URL to a MongoDB server"
)


class StoreNotConfigured(ValueError):
    """No MongoDB URL was given; the message says what to do."""

    def __init__(self) -> None:
        super().__init__(MISSING_URL)


@dataclass(frozen=True)
class MongoSettings:
    """`MONGODB_URL` (required to connect) and `MONGODB_DATABASE` (default `mcpmesh`)."""

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
    """A motor database handle on the server at `url`; raises StoreNotConfigured without one.

    Acknowledged writes are journaled (`j: true`): an append or a new key that was
    acknowledged survives the store process being killed right after. Datetimes come
    back timezone-aware (UTC). The caller owns the client: `db.client.close()` when done.
    """
    if not name:
        raise ValueError("MongoDB database name must not be empty")
    if not url:
        raise StoreNotConfigured()
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(url, tz_aware=True, journal=True)
    return client.get_database(name)
