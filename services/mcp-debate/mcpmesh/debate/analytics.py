"""An org's debate analytics, from its own `debates` and `turns` collections, with suggestions."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from mcpmesh.store import TenantStore


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


async def org_report(store: TenantStore) -> dict[str, Any]:
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
    by_protocol = {name: _protocol_stats(ds) for name, ds in sorted(groups.items())}
    by_model: dict[str, dict[str, float]] = defaultdict(lambda: {"turns": 0, "tokens": 0, "cost_usd": 0.0})
    async for t in (await store.collection("turns")).find(
        {}, {"model": 1, "prompt_tokens": 1, "completion_tokens": 1, "cost_usd": 1}
    ):
        m = by_model[t["model"]]
        m["turns"] += 1
        m["tokens"] += t["prompt_tokens"] + t["completion_tokens"]
        m["cost_usd"] = round(m["cost_usd"] + t["cost_usd"], 9)
    return {
        "debates": len(finished),
        "by_protocol": by_protocol,
        "by_model": dict(sorted(by_model.items())),
        "suggestions": _suggestions(by_protocol),
    }


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
