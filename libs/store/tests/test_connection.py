from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone

from mcpmesh.store import Database, MongoSettings, connect_database


def test_settings_from_env_default_to_embedded_mcpmesh() -> None:
    assert MongoSettings.from_env({}) == MongoSettings(url=None, database="mcpmesh")
    settings = MongoSettings.from_env({"MONGODB_URL": "mongodb://db:27017", "MONGODB_DATABASE": "prod"})
    assert settings == MongoSettings(url="mongodb://db:27017", database="prod")
    assert MongoSettings.from_env({"MONGODB_URL": ""}).url is None


async def test_handles_to_the_same_database_share_data(mongo_db: Database) -> None:
    """The embedded database behaves like a server: every handle in the process sees the same data."""
    await mongo_db.get_collection("probe").insert_one({"n": 1})
    other = connect_database(os.environ.get("MONGODB_URL"), mongo_db.name)
    assert await other.get_collection("probe").count_documents({"n": 1}) == 1


async def test_datetimes_come_back_timezone_aware(mongo_db: Database) -> None:
    stamp = datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=timezone(timedelta(hours=2)))
    await mongo_db.get_collection("probe").insert_one({"_id": "t", "at": stamp})
    found = await mongo_db.get_collection("probe").find_one({"_id": "t"})
    assert found is not None
    assert found["at"] == stamp
    assert found["at"].tzinfo is not None
    assert found["at"].utcoffset() == UTC.utcoffset(None)
