"""A tiny service run as a separate process by the replica tests: `python echo_replica.py`."""

from __future__ import annotations

import asyncio
import os

from mcpmesh.service import MeshService, run

service = MeshService("echo")


@service.tool(access="read")
async def whoami(delay_ms: int = 0) -> dict[str, int]:
    """Answer with this replica's pid, after an optional delay."""
    await asyncio.sleep(delay_ms / 1000)
    return {"pid": os.getpid()}


if __name__ == "__main__":
    run(service)
