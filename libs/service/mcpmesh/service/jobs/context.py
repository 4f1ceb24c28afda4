"""What a job handler gets instead of the request: its org's data, progress, checkpoint, cancellation."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from mcpmesh.bus import Deadline
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.proto.tiers import OrgSettings
from mcpmesh.service.call import Hop, ServiceCaller
from mcpmesh.service.jobs.records import json_size
from mcpmesh.service.jobs.tickets import REFRESH_S
from mcpmesh.store import Collection, TenantStore
from mcpmesh.telemetry.logs import get_logger

if TYPE_CHECKING:
    from mcpmesh.secrets import TenantSecrets
    from mcpmesh.service.grants import GrantCheck, Shared
    from mcpmesh.service.jobs.runner import JobRunner
    from mcpmesh.vectors import TenantVectors

#: Why the runner stopped a job's task: cancelled / taken over / deleted ("store": write nothing),
#: shutdown ("release": clear the lease for the sweeper), a simulated crash ("abandon": write nothing).
StopReason = Literal["store", "release", "abandon"]

_UNSET: Any = object()
G = TypeVar("G")
log = get_logger("mcpmesh.service.jobs")


class JobContext(ServiceCaller):
    """Handed to a job tool's handler (the parameter annotated `JobContext`).

    Cancellation arrives as `asyncio.CancelledError` at the handler's current `await`; code
    running in a thread checks `cancel_requested`. After a cancel, nothing the handler
    reports is written any more. `call_tool` / `request` call other services as the job's org
    until its deadline (`mcpmesh.service.jobs.tickets`); `on_progress` takes a function (there
    is no caller to relay to).
    """

    def __init__(
        self,
        runner: JobRunner,
        tenant: TenantStore,
        collection: Collection,
        doc: dict[str, Any],
    ) -> None:
        self.id: str = doc["_id"]
        self.tool: str = doc["tool"]
        self.org_id = tenant.org_id
        self.started_by: str = doc["started_by"]  # key id (`sub`) that started the job
        self.tier: str = doc["tier"]  # the org's tier when the job started
        self.attempt: int = int(doc.get("attempts", 1))  # 1 on the first run, more after resumes
        #: What an interrupted earlier run saved with `save_checkpoint` (None on a first run).
        self.checkpoint: Any = doc.get("checkpoint")
        self._runner = runner
        self._tenant = tenant
        self._collection = collection
        self._args: dict[str, Any] = doc.get("args") or {}
        self._lease: str = doc["lease"]
        self._deadline_at: datetime = doc["deadline_at"]
        self._renewed = time.monotonic()  # last successful lease renewal (this replica's clock)
        self._stop: StopReason | None = None
        self._task: asyncio.Task[None] | None = None
        self._ticket: str | None = doc.get("ticket")  # traded for stamps to call other services
        self._stamp: tuple[str, float] | None = None  # the last such stamp, and its expiry

    @property
    def store(self) -> TenantStore:
        """This org's MongoDB collections (and only this org's)."""
        return self._tenant

    @property
    def vectors(self) -> TenantVectors:
        """This org's Qdrant collections (and only this org's)."""
        return self._runner.service.vectors.for_tenant(self.org_id)

    @property
    def secrets(self) -> TenantSecrets:
        """This org's secrets (and only this org's), on a service declared with `secrets=True`."""
        from mcpmesh.service.vault import vault_of

        return vault_of(self._runner.service, self._tenant)

    async def org_settings(self) -> OrgSettings:
        """The org's settings as the gateway last published them, else its tier's defaults."""
        return await self._runner.service.org_settings(self.org_id, self.tier)

    async def shared(self, owner_org: str, check: GrantCheck[G]) -> Shared[G] | None:
        """Another org's store when `check` finds a grant for this org now, as `Call.shared`
        (check it again at every step that relies on it: a grant may be revoked while the job runs)."""
        from mcpmesh.service.grants import shared_for

        return await shared_for(self._runner.service, self.org_id, owner_org, check)

    @property
    def cancel_requested(self) -> bool:
        """True once the job was cancelled, taken over or is being stopped: stop working."""
        return self._stop is not None

    async def progress(
        self,
        progress: float,
        total: float | None = None,
        message: str | None = None,
        *,
        partial: Any = _UNSET,
    ) -> None:
        """Record progress (one store write), and optionally the partial result so far (JSON)."""
        fields: dict[str, Any] = {"progress": progress, "total": total, "message": message}
        if partial is not _UNSET:
            fields["partial"] = self._bounded(partial, "partial result")
        try:
            await self._runner.record(self, fields)
        except (asyncio.CancelledError, MeshException):
            raise
        except Exception as exc:  # progress is best effort: a store hiccup does not fail the job
            log.warning("job progress not recorded", job_id=self.id, error=repr(exc))

    async def save_checkpoint(self, state: Any) -> None:
        """Save what a resumed run needs to carry on (JSON); a resumable job's next run reads it
        from `checkpoint`. Work done after the last saved checkpoint is done again on a resume."""
        bounded = self._bounded(state, "checkpoint")
        try:
            await self._runner.record(self, {"checkpoint": bounded})
        except (asyncio.CancelledError, MeshException):
            raise
        except Exception:
            raise MeshException(
                ErrorCode.UNAVAILABLE, "the job's checkpoint could not be saved: the store did not answer"
            ) from None
        self.checkpoint = state

    async def _hop(self) -> Hop:
        if self._stamp is None or self._stamp[1] - time.time() < REFRESH_S:
            self._stamp = await self._runner.stamps.stamp(self._ticket)
        return Hop(
            self._runner.service.bus,
            self.org_id,
            self._stamp[0],
            Deadline(self._deadline_at.timestamp()),
            self.id,
            self._runner.service.settings.max_result_bytes,
        )

    def _bounded(self, value: Any, what: str) -> Any:
        limit = self._runner.settings.value_max_bytes
        try:
            size = json_size(value)
        except (TypeError, ValueError):
            raise MeshException(ErrorCode.INTERNAL, f"the job's {what} is not JSON") from None
        if size > limit:
            raise MeshException(
                ErrorCode.LIMIT_EXCEEDED,
                f"the job's {what} is {size} bytes, over the {limit} a job keeps: keep large data "
                "in a collection of your own and report a reference to it",
            )
        return value

    def __repr__(self) -> str:
        return f"JobContext(id={self.id!r}, tool={self.tool!r}, org_id={self.org_id!r})"
