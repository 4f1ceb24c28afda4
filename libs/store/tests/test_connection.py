from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from mcpmesh.store import MISSING_URL, Database, MongoSettings, StoreNotConfigured, connect_database


def test_settings_from_env() -> None:
    assert MongoSettings.from_env({}) == MongoSettings(url=None, database="mcpmesh")
    settings = MongoSettings.from_env({"MONGODB_URL": "mongodb://db:27017", "MONGODB_DATABASE": "prod"})
    assert settings == MongoSettings(url="mongodb://db:27017", database="prod")
    assert MongoSettings.from_env({"MONGODB_URL": ""}).url is None


def test_no_url_is_refused_with_what_to_do() -> None:
    """There is no in-process fallback: without a server URL nothing connects."""
    for url in (None, ""):
        with pytest.raises(StoreNotConfigured) as refused:
            connect_database(url, "mcpmesh")
        assert str(refused.value) == MISSING_URL
    with pytest.raises(StoreNotConfigured):
        MongoSettings.from_env({}).connect()
    assert "./mesh up" in MISSING_URL and "MONGODB_URL" in MISSING_URL


async def test_handles_to_the_same_database_share_data(mongo_db: Database, mongo_url: str) -> None:
    """Every client of the server sees the same data (one store shared by every process)."""
    await mongo_db.get_collection("probe").insert_one({"n": 1})
    other = connect_database(mongo_url, mongo_db.name)
    assert await other.get_collection("probe").count_documents({"n": 1}) == 1
    other.client.close()


async def test_writes_are_journaled(mongo_db: Database) -> None:
    """An acknowledged write is on the journal (j: true), so it survives a kill of the server."""
    assert mongo_db.client.write_concern.document.get("j") is True
    assert mongo_db.get_collection("probe").write_concern.document.get("j") is True


async def test_datetimes_come_back_timezone_aware(mongo_db: Database) -> None:
    stamp = datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=timezone(timedelta(hours=2)))
    await mongo_db.get_collection("probe").insert_one({"_id": "t", "at": stamp})
    found = await mongo_db.get_collection("probe").find_one({"_id": "t"})
    assert found is not None
    assert found["at"] == stamp
    assert found["at"].tzinfo is not None
    assert found["at"].utcoffset() == UTC.utcoffset(None)
