"""Debates and templates in the org's store: checking a debate's spec, views, listing, cancel."""

from __future__ import annotations

import secrets
from typing import Any, Final

from mcpmesh.debate.engine import now
from mcpmesh.debate.limits import DebateLimits
from mcpmesh.debate.participants import checked, invalid
from mcpmesh.debate.protocols import protocol
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.service.jobs.records import jobs_kind
from mcpmesh.store import Collection, TenantStore

MAX_TOPIC: Final = 4000
#: A debate's statuses: `created` → `running` → one of the finished ones.
FINISHED: Final = ("succeeded", "failed", "cancelled", "budget_exhausted")
SPEC_FIELDS: Final = ("protocol", "participants", "rounds", "judge", "summarizer", "simultaneous")


def new_debate_id() -> str:
    return "dbt-" + secrets.token_hex(12)


def spec_of(raw: dict[str, Any], limits: DebateLimits) -> dict[str, Any]:
    """A debate's checked spec (protocol, participants with ids, rounds, judge, summarizer)."""
    proto = protocol(str(raw.get("protocol") or "society"))
    rounds = raw.get("rounds", 2)
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise invalid("rounds must be a positive integer")
    if rounds > limits.max_rounds:
        raise MeshException(
            ErrorCode.LIMIT_EXCEEDED,
            f"{rounds} rounds is over your tier's {limits.max_rounds}: ask for fewer",
        )
    given = raw.get("participants") or []
    if not isinstance(given, list):
        raise invalid("participants must be a list")
    participants = [checked(p, f"p{i + 1}", "debater") for i, p in enumerate(given)]
    n = len(participants)
    judge = raw.get("judge")
    if judge is None and proto.name == "mad":
        judge = {"system": "judge"}
    judge = checked(judge, f"p{n + 1}", "judge") if judge is not None else None
    summarizer = raw.get("summarizer")
    summarizer = checked(summarizer, f"p{n + 2}", "summarizer") if summarizer is not None else None
    total = n + (judge is not None) + (summarizer is not None)
    if total > limits.max_participants:
        raise MeshException(
            ErrorCode.LIMIT_EXCEEDED,
            f"{total} participants is over your tier's {limits.max_participants}: use fewer",
        )
    spec = {
        "protocol": proto.name,
        "participants": participants,
        "rounds": rounds,
        "judge": judge,
        "summarizer": summarizer,
        "simultaneous": bool(raw.get("simultaneous") or False),
    }
    proto.check(spec)
    return spec


def checked_topic(topic: Any) -> str:
    if not isinstance(topic, str) or not topic.strip():
        raise invalid("topic must be a non-empty question or statement")
    if len(topic) > MAX_TOPIC:
        raise invalid(f"topic must be at most {MAX_TOPIC} characters")
    return topic.strip()


def everyone(debate: dict[str, Any]) -> list[dict[str, Any]]:
    return [*debate["participants"], *(p for p in (debate.get("judge"), debate.get("summarizer")) if p)]


def view(doc: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k != "_id"}
    out["debate_id"] = doc["_id"]
    for key in ("created_at", "updated_at", "started_at", "finished_at"):
        if out.get(key) is not None:
            out[key] = out[key].isoformat()
    return out


async def collection(store: TenantStore, kind: str = "debates") -> Collection:
    return await store.collection(kind)


async def find(store: TenantStore, debate_id: str) -> dict[str, Any]:
    if not isinstance(debate_id, str) or not debate_id.startswith("dbt-") or len(debate_id) > 64:
        raise invalid("debate_id must be a debate id (dbt-...)")
    doc = await (await collection(store)).find_one({"_id": debate_id})
    if doc is None:
        raise MeshException(ErrorCode.NOT_FOUND, f"no debate {debate_id}")
    return doc  # type: ignore[no-any-return]


async def current(store: TenantStore, debate_id: str) -> dict[str, Any]:
    """The debate, its status reconciled with its job's: a job that ended without its handler
    finishing the debate (job_cancel, a replica stopped with no resume left, its budget spent)
    ends the debate the same way. A stopped handler (cancelled, taken over, a replica shutting
    down) writes nothing, so a resumed run can carry on."""
    doc = await find(store, debate_id)
    if doc["status"] not in ("running", "cancelling") or not doc.get("job_id"):
        return doc
    job = await (await store.collection(jobs_kind("debate"))).find_one(
        {"_id": doc["job_id"]}, {"status": 1, "error": 1}
    )
    if job is None or job["status"] not in ("failed", "cancelled"):
        return doc
    error = job.get("error") or {}
    ended = {
        # A debate being cancelled whose job then ended (its resume found it cancelling) is cancelled.
        "status": "cancelled" if doc["status"] == "cancelling" else job["status"],
        "error": f"{error.get('code')}: {error.get('message')}" if error else None,
        "finished_at": now(),
        "updated_at": now(),
    }
    await (await collection(store)).update_one(
        {"_id": debate_id, "job_id": doc["job_id"], "status": doc["status"]}, {"$set": ended}
    )
    return {**doc, **ended}


async def insert(
    store: TenantStore, topic: str, spec: dict[str, Any], ctx_id: str, template: str | None
) -> dict[str, Any]:
    at = now()
    doc = {
        "_id": new_debate_id(),
        "topic": topic,
        **spec,
        "template": template,
        "status": "created",
        "ctx_id": ctx_id,
        "job_id": None,
        "outcome": None,
        "turns": 0,
        "tokens": 0,
        "cost_usd": 0.0,
        "created_at": at,
        "updated_at": at,
    }
    await (await collection(store)).insert_one(doc)
    return doc


async def listing(
    store: TenantStore, status: str | None, protocol_: str | None, limit: int
) -> list[dict[str, Any]]:
    if not 1 <= limit <= 100:
        raise invalid("limit must be 1-100")
    query: dict[str, Any] = {}
    if status:
        query["status"] = status
    if protocol_:
        query["protocol"] = protocol_
    found = (
        await (await collection(store))
        .find(query)
        .sort([("created_at", -1), ("_id", -1)])
        .limit(limit)
        .to_list(None)
    )
    return [
        {
            k: view(d)[k]
            for k in ("debate_id", "topic", "protocol", "status", "rounds", "turns", "tokens", "created_at")
        }
        for d in found
    ]


async def cancel(store: TenantStore, debate_id: str) -> dict[str, Any]:
    """A debate not started is cancelled at once; a running one stops after the turn in flight."""
    doc = await find(store, debate_id)
    coll = await collection(store)
    at = now()
    await coll.update_one(
        {"_id": debate_id, "status": "created"},
        {"$set": {"status": "cancelled", "finished_at": at, "updated_at": at}},
    )
    await coll.update_one(
        {"_id": debate_id, "status": "running"}, {"$set": {"status": "cancelling", "updated_at": at}}
    )
    return view(await current(store, doc["_id"]))


async def transcript(store: TenantStore, debate_id: str, after_turn: int) -> dict[str, Any]:
    doc = await find(store, debate_id)
    turns = (
        await (await collection(store, "turns"))
        .find({"debate_id": debate_id, "idx": {"$gt": after_turn}})
        .sort("idx", 1)
        .to_list(None)
    )
    keep = (
        "idx",
        "name",
        "role",
        "round",
        "model",
        "content",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
    )
    return {
        "debate_id": debate_id,
        "status": doc["status"],
        "ctx_id": doc["ctx_id"],
        "turns": [{"participant": t["pid"], **{k: t[k] for k in keep}} for t in turns],
    }


# -- templates -------------------------------------------------------------------------------


def template_name(name: Any) -> str:
    if (
        not isinstance(name, str)
        or not 1 <= len(name) <= 64
        or not name.replace("-", "").replace("_", "").isalnum()
    ):
        raise invalid("template name must be 1-64 letters, digits, '-' or '_'")
    return name


async def template_save(store: TenantStore, name: str, raw: dict[str, Any]) -> dict[str, Any]:
    """Keep the template as given (checked by the caller): a debate created from it is checked again."""
    doc = {"_id": template_name(name), **raw, "updated_at": now()}
    await (await collection(store, "templates")).replace_one({"_id": doc["_id"]}, doc, upsert=True)
    return template_view(doc)


async def template_raw(store: TenantStore, name: str) -> dict[str, Any]:
    """A template's fields as saved (not_found for a name this org has no template of)."""
    doc = await (await collection(store, "templates")).find_one({"_id": template_name(name)})
    if doc is None:
        raise MeshException(ErrorCode.NOT_FOUND, f"no template {name}: see templates")
    return {k: doc.get(k) for k in SPEC_FIELDS}


def template_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": doc["_id"],
        **{k: doc.get(k) for k in SPEC_FIELDS},
        "updated_at": doc["updated_at"].isoformat(),
    }


async def templates(store: TenantStore) -> list[dict[str, Any]]:
    found = await (await collection(store, "templates")).find({}).sort("_id", 1).to_list(None)
    return [template_view(d) for d in found]


async def template_delete(store: TenantStore, name: str) -> dict[str, Any]:
    gone = await (await collection(store, "templates")).delete_one({"_id": template_name(name)})
    return {"deleted": name, "existed": gone.deleted_count == 1}
