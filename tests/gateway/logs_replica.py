"""A `logs` service replica run as its own process by the replica tests: `python logs_replica.py`."""

from __future__ import annotations

import os

from mcpmesh.service import MeshService, run

service = MeshService("logs")


@service.tool(access="read", open_world=False)
async def whoami() -> dict[str, int]:
    """This replica's pid."""
    return {"pid": os.getpid()}


if __name__ == "__main__":
    run(service)
