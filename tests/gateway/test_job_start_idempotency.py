"""A job tool declared with an idempotency key is, for the gateway, a tool whose timed-out
start may be resent with the same key (the catalog reads the key from the tool's `_meta`)."""

from __future__ import annotations

from typing import Any

from mcpmesh.gateway.catalog import tool_entry
from mcpmesh.service import JobContext, MeshService, ServiceSettings
from mcpmesh.service.testing import LocalHarness


def job_service() -> MeshService:
    svc = MeshService("rag")

    @svc.job_tool(access="write", idempotency_key="op_id")
    async def reindex(kb: str, job: JobContext, op_id: str | None = None) -> str:
        return kb

    @svc.job_tool(access="write")
    async def rebuild(kb: str, job: JobContext) -> str:
        return kb

    return svc


async def test_the_catalog_sees_a_keyed_job_start_as_resendable_with_its_key(
    mongo_url: str, mongo_db: Any
) -> None:
    settings = ServiceSettings(mongodb_url=mongo_url, mongodb_database=mongo_db.name)
    async with LocalHarness(job_service(), settings=settings) as local:
        listed = (await local.request("org-acme", "tools/list", scopes=["rag:*"]))["tools"]
    entries = {raw["name"]: tool_entry("rag", raw) for raw in listed}
    keyed, plain = entries["reindex"], entries["rebuild"]
    assert keyed is not None and plain is not None
    assert keyed.idempotency_key == "op_id" and not keyed.repeatable  # safe only with the key
    assert plain.idempotency_key is None and not plain.repeatable  # each start is another job
