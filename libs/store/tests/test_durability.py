"""The embedded store keeps what it acknowledged: across a restart and across a SIGKILL."""

from __future__ import annotations

from pathlib import Path

from mcpmesh.dev.mongoproc import LocalMongoServer
from mcpmesh.store import connect_database


async def test_acknowledged_writes_survive_a_sigkill_of_the_store(tmp_path: Path) -> None:
    """Writes are journaled (j: true): killed right after the last acknowledgement, the
    server still has every document when it comes back (with w:1 alone it loses the last ~30 ms)."""
    server = LocalMongoServer(home=tmp_path / "store")
    try:
        db = connect_database(server.url, "durability")
        for i in range(300):
            await db.get_collection("probe").insert_one({"_id": i})
        await db.get_collection("probe").update_one({"_id": 299}, {"$set": {"last": True}})
        db.client.close()
        server.kill()
        server.start()
        db = connect_database(server.url, "durability")
        assert await db.get_collection("probe").count_documents({}) == 300
        assert await db.get_collection("probe").find_one({"_id": 299}) == {"_id": 299, "last": True}
        db.client.close()
        server.stop()  # a clean stop and start keeps everything too
        server.start()
        db = connect_database(server.url, "durability")
        assert await db.get_collection("probe").count_documents({}) == 300
        db.client.close()
    finally:
        server.close()
