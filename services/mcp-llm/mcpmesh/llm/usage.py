"""Tokens and cost of each call: into the kit's usage event (`call.usage`), into the org's own
daily buckets (the `usage` tool, monthly budgets), and checked against the org's monthly budgets
before a provider is called.

The daily buckets are written behind the call (`Buckets`: a journaled store write is most of
what a call costs the service), one write per bucket for all the calls made while the previous
write was in flight; a read of them (`usage`, a budget check) first waits for this replica's.

Cost: the model's prices from the provider table when given, else litellm's bundled cost map
(`prices`); the offline provider costs nothing. A call on the org's
own key is billed by the provider to the org (`billed_to: "org"`): it counts towards the token
budget, but not towards the cost budget, which caps what the mesh bills.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from mcpmesh.llm import prices
from mcpmesh.llm.providers import IN_PROCESS_MODELS, Deployment
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.proto.tiers import OrgSettings
from mcpmesh.service import Call
from mcpmesh.store import Index, TenantStore
from mcpmesh.telemetry.logs import get_logger

log = get_logger("mcpmesh.llm")

USAGE_KIND: Final = "llm_usage"
USAGE_INDEXES: Final = [Index(keys=[("month", 1)]), Index(keys=[("day", 1)])]
_SUMS: Final = ("calls", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd", "cache_hits")


@dataclass(frozen=True)
class Metered:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    cost_known: bool = True

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def meter(deployment: Deployment, usage: Any) -> Metered:
    """Tokens from the provider's usage block, priced for this deployment."""
    prompt = _int(getattr(usage, "prompt_tokens", 0))
    completion = _int(getattr(usage, "completion_tokens", 0))
    details = getattr(usage, "prompt_tokens_details", None)
    cached = _int(getattr(details, "cached_tokens", 0))
    m = deployment.model
    if m.input_cost_per_token is not None or m.output_cost_per_token is not None:
        cost = prompt * (m.input_cost_per_token or 0.0) + completion * (m.output_cost_per_token or 0.0)
        return Metered(prompt, completion, cached, cost, True)
    priced = prices.cost(deployment, prompt, completion, cached)
    if priced is None:  # a model with no known price (the offline one, a local endpoint): tokens count
        return Metered(prompt, completion, cached, 0.0, deployment.provider.kind in IN_PROCESS_MODELS)
    return Metered(prompt, completion, cached, priced, True)


def billed_to(deployment: Deployment) -> str:
    return "org" if deployment.provider.owner == "org" else "system"


def _periods(now: datetime | None = None) -> tuple[str, str]:
    now = now or datetime.now(UTC)
    return now.strftime("%Y-%m-%d"), now.strftime("%Y-%m")


class Buckets:
    """The orgs' daily bucket increments not yet written, per org, and the task writing them
    (one per org at a time: what arrives meanwhile is summed into the next write)."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[TenantStore, dict[str, tuple[dict[str, Any], dict[str, str]]]]] = {}
        self._writing: dict[str, asyncio.Task[None]] = {}

    def add(
        self, org_id: str, store: TenantStore, bucket: str, increments: dict[str, Any], fields: dict[str, str]
    ) -> None:
        rows = self._pending.setdefault(org_id, (store, {}))[1]
        summed = rows.setdefault(bucket, ({}, fields))[0]
        for name, value in increments.items():
            summed[name] = summed.get(name, 0) + value
        if org_id not in self._writing:
            self._writing[org_id] = asyncio.create_task(self._write(org_id))

    async def settled(self, org_id: str) -> None:
        """Once this org's increments added so far are written (or their write failed)."""
        task = self._writing.get(org_id)
        if task is not None:
            await asyncio.shield(task)

    async def close(self) -> None:
        """Write what is pending (the service is stopping)."""
        await asyncio.gather(*self._writing.values(), return_exceptions=True)

    async def _write(self, org_id: str) -> None:
        try:
            while (batch := self._pending.pop(org_id, None)) is not None:
                store, rows = batch
                try:
                    collection = await store.collection(USAGE_KIND)
                    for bucket, (increments, fields) in rows.items():
                        await collection.update_one(
                            {"_id": bucket}, {"$inc": increments, "$setOnInsert": fields}, upsert=True
                        )
                except Exception as exc:  # the answers are sent: say what was not counted
                    log.error(
                        "llm usage not recorded", org=org_id, buckets=list(rows), error=type(exc).__name__
                    )
        finally:
            del self._writing[org_id]


def record(
    call: Call, buckets: Buckets, deployment: Deployment, metered: Metered, *, cache_hit: bool = False
) -> dict[str, Any]:
    """Add the figures to the kit's usage event (summed over a call's provider calls) and the org's
    daily bucket (written behind the call); returns the call's figures so far."""
    payer = billed_to(deployment)
    for name in ("prompt_tokens", "completion_tokens", "cached_tokens"):
        call.usage[name] = call.usage.get(name, 0) + getattr(metered, name)
    call.usage["cost_usd"] = round(call.usage.get("cost_usd", 0.0) + metered.cost_usd, 9)
    call.usage["cost_known"] = call.usage.get("cost_known", True) and metered.cost_known
    call.usage.update(billed_to=payer, model=deployment.label)
    day, month = _periods()
    increments = {
        "calls": 1,
        "prompt_tokens": metered.prompt_tokens,
        "completion_tokens": metered.completion_tokens,
        "cached_tokens": metered.cached_tokens,
        "cost_usd": metered.cost_usd,
        "cache_hits": 1 if cache_hit else 0,
    }
    fields = {"day": day, "month": month, "model": deployment.label, "billed_to": payer}
    buckets.add(call.org_id, call.store, f"{day}|{deployment.label}|{payer}", increments, fields)
    return dict(call.usage)


async def month_totals(store: TenantStore, month: str | None = None) -> dict[str, float]:
    """This org's tokens this month, and what the mesh billed it (its own keys left out)."""
    month = month or _periods()[1]
    rows = await store.collection(USAGE_KIND)
    totals = {"tokens": 0.0, "cost_usd": 0.0}
    async for row in rows.find({"month": month}):
        totals["tokens"] += row.get("prompt_tokens", 0) + row.get("completion_tokens", 0)
        if row.get("billed_to") == "system":
            totals["cost_usd"] += row.get("cost_usd", 0.0)
    return totals


async def check_budget(call: Call, buckets: Buckets, settings: OrgSettings) -> None:
    """LIMIT_EXCEEDED, before any provider is called, when a monthly budget is used up."""
    tokens_cap = settings.monthly_llm_tokens
    cost_cap = settings.monthly_llm_cost_usd
    if tokens_cap is None and cost_cap is None:
        return
    await buckets.settled(call.org_id)
    used = await month_totals(call.store)
    if tokens_cap is not None and used["tokens"] >= tokens_cap:
        raise MeshException(
            ErrorCode.LIMIT_EXCEEDED,
            f"your organization has used its monthly LLM token budget ({int(used['tokens'])} of "
            f"{tokens_cap} tokens): wait for next month or ask an admin to raise monthly_llm_tokens",
            details={"budget": "monthly_llm_tokens", "used": int(used["tokens"]), "limit": tokens_cap},
        )
    if cost_cap is not None and used["cost_usd"] >= cost_cap:
        raise MeshException(
            ErrorCode.LIMIT_EXCEEDED,
            f"your organization has used its monthly LLM cost budget (${used['cost_usd']:.4f} of "
            f"${cost_cap}): wait for next month, use a provider with your own key, or ask an admin "
            "to raise monthly_llm_cost_usd",
            details={"budget": "monthly_llm_cost_usd", "used": round(used["cost_usd"], 6), "limit": cost_cap},
        )


async def report(store: TenantStore, days: int) -> dict[str, Any]:
    """The org's usage by day and model, newest day first, with totals and the cache hit rate."""
    rows = await store.collection(USAGE_KIND)
    since = datetime.fromtimestamp(datetime.now(UTC).timestamp() - (days - 1) * 86400, UTC).strftime(
        "%Y-%m-%d"
    )
    out: list[dict[str, Any]] = []
    totals = dict.fromkeys(_SUMS, 0.0)
    async for row in rows.find({"day": {"$gte": since}}):
        entry = {k: row.get(k) for k in ("day", "model", "billed_to")}
        entry.update({k: row.get(k, 0) for k in _SUMS})
        entry["cost_usd"] = round(float(entry["cost_usd"]), 9)
        out.append(entry)
        for k in _SUMS:
            totals[k] += row.get(k, 0)
    out.sort(key=lambda r: (r["day"], r["model"], r["billed_to"]), reverse=True)
    calls = totals["calls"]
    summary: dict[str, Any] = {k: (round(v, 9) if k == "cost_usd" else int(v)) for k, v in totals.items()}
    summary["cache_hit_rate"] = round(totals["cache_hits"] / calls, 4) if calls else 0.0
    return {"since": since, "totals": summary, "by_day_and_model": out}
