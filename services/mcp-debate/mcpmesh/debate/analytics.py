"""An org's debate analytics, from its own `debates` and `turns` collections, with suggestions;
and anonymized aggregates across orgs (`Comparative`)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from mcpmesh.service import MeshService
from mcpmesh.store import TenantStore

#: Cross-org aggregates are shown only when at least this many orgs contribute.
MIN_ORGS: Final = 5


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


async def by_protocol(store: TenantStore) -> dict[str, dict[str, Any]]:
    """The org's finished debates summed up per protocol."""
    finished = (
        await (await store.collection("debates"))
        .find(
            {"status": {"$in": ["succeeded", "budget_exhausted", "cancelled", "failed"]}},
            {
                "protocol": 1,
                "status": 1,
                "rounds": 1,
                "rounds_run": 1,
                "outcome": 1,
                "tokens": 1,
                "cost_usd": 1,
            },
        )
        .to_list(None)
    )
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in finished:
        groups[d["protocol"]].append(d)
    return {name: _protocol_stats(ds) for name, ds in sorted(groups.items())}


async def org_report(store: TenantStore, comparative: Comparative) -> dict[str, Any]:
    protocols = await by_protocol(store)
    by_model: dict[str, dict[str, float]] = defaultdict(lambda: {"turns": 0, "tokens": 0, "cost_usd": 0.0})
    async for t in (await store.collection("turns")).find(
        {}, {"model": 1, "prompt_tokens": 1, "completion_tokens": 1, "cost_usd": 1}
    ):
        m = by_model[t["model"]]
        m["turns"] += 1
        m["tokens"] += t["prompt_tokens"] + t["completion_tokens"]
        m["cost_usd"] = round(m["cost_usd"] + t["cost_usd"], 9)
    return {
        "debates": sum(p["debates"] for p in protocols.values()),
        "by_protocol": protocols,
        "by_model": dict(sorted(by_model.items())),
        "suggestions": _suggestions(protocols),
        "comparative": comparative.view(),
    }


@dataclass
class Comparative:
    """Anonymized aggregates across orgs (per protocol: orgs, debates, means of the orgs' means),
    refreshed in the background on each replica; shown only once `MIN_ORGS` orgs contribute, and a
    protocol only once that many orgs ran it. No org id or single org's figure is kept."""

    orgs: int = 0
    by_protocol: dict[str, dict[str, Any]] = field(default_factory=dict)
    computed_at: str | None = None

    def view(self) -> dict[str, Any]:
        if self.orgs < MIN_ORGS:
            return {"shown": False, "why": f"shown once at least {MIN_ORGS} orgs have finished debates"}
        return {
            "shown": True,
            "orgs": self.orgs,
            "by_protocol": self.by_protocol,
            "computed_at": self.computed_at,
        }


async def refresh(service: MeshService, into: Comparative) -> Comparative:
    """Recompute the cross-org aggregates (background work for no caller: `service.tenants`)."""
    reports = []
    async for store in service.tenants("debates"):
        found = await by_protocol(store)
        if found:
            reports.append(found)
    protocols: dict[str, dict[str, Any]] = {}
    for name in sorted({p for r in reports for p in r}):
        mine = [r[name] for r in reports if name in r]
        if len(mine) < MIN_ORGS:
            continue
        protocols[name] = {
            "orgs": len(mine),
            "debates": sum(s["debates"] for s in mine),
            **{
                k: _mean([s[k] for s in mine if s[k] is not None])
                for k in ("rounds_run", "stable_round", "agreement")
            },
            "tokens_per_debate": _mean([s["tokens"] / s["debates"] for s in mine]),
        }
    into.orgs, into.by_protocol, into.computed_at = len(reports), protocols, datetime.now(UTC).isoformat()
    return into


def _protocol_stats(ds: list[dict[str, Any]]) -> dict[str, Any]:
    outcomes = [d.get("outcome") or {} for d in ds if d["status"] == "succeeded"]
    return {
        "debates": len(ds),
        "succeeded": len(outcomes),
        "rounds": _mean([d["rounds"] for d in ds]),
        "rounds_run": _mean([d.get("rounds_run", 0) for d in ds]),
        "stable_round": _mean([o["stable_round"] for o in outcomes if o.get("stable_round")]),
        "agreement": _mean([o["agreement"] for o in outcomes if "agreement" in o]),
        "consensus": sum(1 for o in outcomes if o.get("consensus")),
        "early_stops": sum(1 for o in outcomes if o.get("early_stop")),
        "tokens": sum(d.get("tokens", 0) for d in ds),
        "cost_usd": round(sum(d.get("cost_usd", 0.0) for d in ds), 9),
    }


def _suggestions(by_protocol: dict[str, dict[str, Any]]) -> list[str]:
    """Rounds that changed nothing: what setting fewer would have saved."""
    out = []
    for name, s in by_protocol.items():
        stable, rounds_run = s["stable_round"], s["rounds_run"]
        if not s["succeeded"] or stable is None or not rounds_run or stable >= rounds_run:
            continue
        per_round = s["tokens"] / s["debates"] / rounds_run
        saved = int(per_round * (rounds_run - stable) * s["debates"])
        out.append(
            f"{name}: answers stop changing after round {stable:g} on average (of {rounds_run:g} run): "
            f"set rounds to {max(1, round(stable))} to save about {saved} tokens over these {s['debates']} debates"
        )
    return out
