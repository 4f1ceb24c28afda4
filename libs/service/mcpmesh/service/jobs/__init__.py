"""Durable jobs: a tool whose work outlives its request, its replica and the client's connection.

    @service.job_tool(access="write", resumable=True, budget_s=600)
    async def reindex(kb: str, job: JobContext) -> dict[str, int]:
        done = (job.checkpoint or {}).get("done", 0)
        ...
        await job.progress(done, total, "reindexing")
        await job.save_checkpoint({"done": done})

Calling the tool records the job in the org's own store and answers at once with its view
(`job_id`, `status`); the kit adds `job_status`, `job_result`, `job_cancel` and `jobs`.
"""

from mcpmesh.service.jobs.context import JobContext
from mcpmesh.service.jobs.runner import JobRunner
from mcpmesh.service.jobs.tools import JOB_ADMIN_TOOLS, TOOL_JOB_META

__all__ = ["JOB_ADMIN_TOOLS", "TOOL_JOB_META", "JobContext", "JobRunner"]
