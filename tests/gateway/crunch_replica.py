"""`crunch`, a test service with durable jobs that progress in steps, for the task tests: in
process (`build(trace)`; `name` for a second such service), or as a replica process of its own (`python crunch_replica.py`, the
trace file in CRUNCH_TRACE, job settings from MCPMESH_JOB_*).

Each handler appends what it did to the trace file, one line each: `<pid> <job_id> step <i>`,
`<pid> <job_id> cancelled` (it saw the cancellation), `<pid> <job_id> resumed <next step>`.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.service import JobContext, MeshService, run


def build(trace: Path | None = None, name: str = "crunch") -> MeshService:
    svc = MeshService(name)

    def note(job: JobContext, what: str) -> None:
        if trace is not None:
            with trace.open("a") as out:
                out.write(f"{os.getpid()} {job.id} {what}\n")

    async def work(job: JobContext, steps: int, step_s: float, first: int, *, save: bool) -> None:
        try:
            for i in range(first, steps + 1):
                await asyncio.sleep(step_s)
                note(job, f"step {i}")
                if save:
                    await job.save_checkpoint({"next": i + 1})
                await job.progress(i, steps, f"step {i} of {steps}")
        except asyncio.CancelledError:
            note(job, "cancelled")
            raise

    @svc.job_tool(access="write", budget_s=600)
    async def long(steps: int, step_s: float, job: JobContext) -> dict[str, int]:
        """`steps` steps of `step_s` seconds each."""
        await work(job, steps, step_s, 1, save=False)
        return {"steps": steps}

    @svc.job_tool(access="write", resumable=True, budget_s=600)
    async def resumable(steps: int, step_s: float, job: JobContext) -> dict[str, int]:
        """The same, resumed from the last step done when its replica dies."""
        first = int((job.checkpoint or {}).get("next", 1))
        if job.attempt > 1:
            note(job, f"resumed {first}")
        await work(job, steps, step_s, first, save=True)
        return {"steps": steps, "attempt": job.attempt}

    @svc.job_tool(access="write")
    async def refused(job: JobContext) -> str:
        """Fails as a tool does."""
        raise MeshException(ErrorCode.LIMIT_EXCEEDED, "the free tier allows 3 crunches a day")

    @svc.tool(access="read", open_world=False)
    async def ping() -> str:
        """A plain tool."""
        return "pong"

    return svc


if __name__ == "__main__":
    trace = os.environ.get("CRUNCH_TRACE")
    run(build(Path(trace) if trace else None))
