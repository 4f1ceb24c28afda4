"""The periodic sweep: idle contexts to the cold tier, crash leftovers finished, expired shares removed.

Runs every CONTEXT_SWEEP_INTERVAL_S in the background of each replica (all steps are
conditional updates, so replicas sweeping at once do no harm), and can be called directly.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Final

from mcpmesh.context.app import ContextApp
from mcpmesh.context.clock import seconds_ago, utcnow
from mcpmesh.context.grants import revoke_cascade
from mcpmesh.context.lifecycle import Waiter, move_to_cold, repair_pending, resume, stale_pending
from mcpmesh.context.storage import COLD, HOT
from mcpmesh.store import TenantStore
from mcpmesh.telemetry.logs import get_logger

log = get_logger("mcpmesh.context.sweep")
#: Contexts moved per org per sweep (the next sweep continues).
BATCH: Final = 500


async def sweep(app: ContextApp, now: datetime | None = None) -> dict[str, int]:
    """One pass over every org with contexts; `now` may be set (tests) to simulate time passing."""
    now = now or utcnow()
    report = {"orgs": 0, "moved_to_cold": 0, "resumed": 0, "repaired": 0, "expired_shares": 0}
    async for org in app.service.tenants(HOT[0]):
        report["orgs"] += 1
        await _sweep_org(app, org, now, report)
    return report


async def _sweep_org(app: ContextApp, org: TenantStore, now: datetime, report: dict[str, int]) -> None:
    hot = await org.collection(HOT[0])
    cold = await org.collection(COLD[0])
    lease_cutoff = seconds_ago(now, app.settings.lock_lease_s)
    stale_cutoff = seconds_ago(now, app.settings.pending_stale_s)
    # 1. operations whose caller died: moves/deletes under a stale lock, unfinished appends
    for tier, contexts in ((HOT, hot), (COLD, cold)):
        async for doc in contexts.find({"lock.at": {"$lt": lease_cutoff}}):
            await resume(app, org, doc, tier)
            report["resumed"] += 1
    async for doc in hot.find({"pending.at": {"$lt": stale_cutoff}}):
        if stale_pending(app, doc, now):
            await repair_pending(app, org, doc, now)
            report["repaired"] += 1
    # 2. idle contexts to the cold tier
    cutoff = seconds_ago(now, app.settings.cold_after_s)
    idle = hot.find({"touched_at": {"$lt": cutoff}, "lock": None, "pending": {"$size": 0}}, {"_id": 1})
    for doc in await idle.limit(BATCH).to_list(None):
        if await move_to_cold(app, org, doc["_id"], cutoff):
            report["moved_to_cold"] += 1
    # 3. expired shares (access checks already ignore them; this just tidies up)
    shares = await org.collection("shares")
    expired = [doc["_id"] async for doc in shares.find({"expires_at": {"$lte": now}}, {"_id": 1})]
    if expired:
        report["expired_shares"] += len(await revoke_cascade(app, org, expired))


async def run_periodically(app: ContextApp) -> None:
    """The background loop started by the service's on_start hook."""
    interval = app.settings.sweep_interval_s
    while True:
        await asyncio.sleep(interval)
        try:
            report = await sweep(app)
            if any(report[key] for key in report if key != "orgs"):
                log.info("sweep", **report)
        except asyncio.CancelledError:
            raise
        except Exception:  # keep sweeping: the next pass retries
            log.exception("sweep failed")


__all__ = ["Waiter", "run_periodically", "sweep"]
