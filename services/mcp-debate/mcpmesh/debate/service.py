"""The debate service: debates owned by one org, run as durable jobs through mcp-llm, with their
transcripts kept as contexts in mcp-context (both called over the bus as the debate's org)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

from mcp.server.mcpserver import Context

from mcpmesh.bus import cancel_until_done
from mcpmesh.debate import analytics, debates, external
from mcpmesh.debate.engine import Runner, Stopped, now
from mcpmesh.debate.limits import limits_for
from mcpmesh.debate.participants import SYSTEM
from mcpmesh.debate.protocols import PROTOCOLS, protocol
from mcpmesh.debate.settings import DebateSettings
from mcpmesh.debate.storage import STORE_KINDS
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.service import Call, JobContext, MeshService, call_of
from mcpmesh.telemetry.logs import get_logger
from mcpmesh.tenancy.scopes import covers

log = get_logger("mcpmesh.debate")

INSTRUCTIONS = """\
Multi-agent debates for your organization. create a debate (topic, protocol: society | mad |
panel, participants: your personas {name, role, instructions, model} or system participants
{system: judge | devils_advocate | summarizer}, rounds), then run it: run answers at once with a
job id; follow it with get / job_status, read the transcript so far with transcript, stop it
with cancel. Templates keep a protocol, personas and rounds to start debates from. analytics
sums up your debates and suggests savings."""


#: What a run calls on the key that started it: mcp-llm's chat, mcp-context's append (and get,
#: when a resumed run looks for the transcript's last entry).
RUN_SCOPES: Final = ("llm:read", "context:read", "context:write")


async def _may_run(call: Call, arguments: dict[str, Any]) -> None:
    """Refuse a start, before any job exists, that could not run: a key that could not make the
    run's calls, a debate of the org that is not `created`, a seat not accepted. (The run checks
    the debate again: its claim, not this look, is what makes it run once.)"""
    missing = [scope for scope in RUN_SCOPES if not covers(call.stamp.scopes, scope)]
    if missing:
        raise MeshException(
            ErrorCode.FORBIDDEN,
            f"this key lacks {', '.join(missing)}: a debate runs on the key that starts it, calling "
            "mcp-llm (llm:read) and mcp-context (context:read, context:write) as your org; "
            "start it with a key that has them",
        )
    doc = await debates.current(call.store, arguments["debate_id"])
    if doc["status"] != "created":
        raise _runs_once(doc)
    await external.seats_ready(call.store, doc)


def _runs_once(doc: dict[str, Any]) -> MeshException:
    return MeshException(
        ErrorCode.CONFLICT, f"debate {doc['_id']} is {doc['status']}: a debate runs once, create a new one"
    )


async def _check_models(call: Call, spec: dict[str, Any]) -> None:
    """Every participant's model must be one the org may use (mcp-llm decides)."""
    for model in sorted({p["model"] for p in debates.everyone(spec) if p["kind"] != "external"}):
        try:
            await call.call_tool("llm", "count_tokens", {"text": "ok", "model": model}, on_progress=None)
        except MeshException as exc:
            raise MeshException(exc.error.code, f"model {model!r}: {exc.error.message}") from None


@dataclass
class DebateApp:
    """The service's state: the cross-org aggregates this replica last computed."""

    comparative: analytics.Comparative


async def _compare_forever(service: MeshService, app: DebateApp, interval_s: float) -> None:
    while interval_s > 0:
        await asyncio.sleep(interval_s)
        try:
            await analytics.refresh(service, app.comparative)
        except Exception:  # a store hiccup: the previous aggregates stay, the next round retries
            log.exception("cross-org debate analytics not refreshed")


def build_service(settings: DebateSettings | None = None) -> MeshService:
    """A fresh debate service (settings from the environment unless given)."""
    settings = settings or DebateSettings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(service: MeshService) -> AsyncIterator[DebateApp]:
        app = DebateApp(analytics.Comparative())
        task = asyncio.create_task(_compare_forever(service, app, settings.compare_interval_s))
        try:
            yield app
        finally:
            await cancel_until_done([task], what="debate analytics")

    service = MeshService(
        "debate",
        description="Multi-agent debates (society of minds, MAD, panels) per tenant",
        instructions=INSTRUCTIONS,
        store_kinds=STORE_KINDS,
        grant_index="invitations",
        lifespan=lifespan,
    )

    @service.tool(access="read", open_world=False)
    async def protocols() -> dict[str, Any]:
        """The debate protocols and the system participants every org may use."""
        return {
            "protocols": [{"name": p.name, "description": p.description} for p in PROTOCOLS.values()],
            "system_participants": {k: {"name": v["name"], "role": v["role"]} for k, v in SYSTEM.items()},
        }

    @service.tool(access="write", idempotent=False, destructive=False, budget_s=60)
    async def create(
        ctx: Context,
        topic: str,
        protocol: str | None = None,
        participants: list[dict[str, Any]] | None = None,
        rounds: int | None = None,
        judge: dict[str, Any] | None = None,
        summarizer: dict[str, Any] | None = None,
        simultaneous: bool | None = None,
        template: str | None = None,
    ) -> dict[str, Any]:
        """A new debate (not started: run it). protocol: society (default), mad or panel;
        participants: personas {name, role?, instructions?, model?} or {system: judge |
        devils_advocate | summarizer, model?} or another org's seat {external_org, name, role?};
        rounds (default 2, bounded by your tier); judge (mad: default the system judge);
        summarizer (panel, optional); simultaneous (panel: a round's speakers don't see each
        other); template: start from one of
        your templates (the arguments given override it). Its transcript is a new context."""
        call = call_of(ctx)
        raw: dict[str, Any] = dict(await debates.template_raw(call.store, template)) if template else {}
        given = {
            "protocol": protocol,
            "participants": participants,
            "rounds": rounds,
            "judge": judge,
            "summarizer": summarizer,
            "simultaneous": simultaneous,
        }
        raw.update({k: v for k, v in given.items() if v is not None})
        topic = debates.checked_topic(topic)
        spec = debates.spec_of(raw, limits_for(call.stamp.tier))
        if any(p.get("org_id") == call.org_id for p in spec["participants"]):
            raise MeshException(
                ErrorCode.INVALID_REQUEST, "external_org is your own org: add a persona instead"
            )
        await _check_models(call, spec)
        made = await call.call_tool(
            "context",
            "create",
            {
                "title": f"debate: {topic[:200]}",
                "namespace": settings.namespace,
                "tags": ["debate", spec["protocol"]],
            },
            on_progress=None,
        )
        doc = await debates.insert(call.store, topic, spec, made["structuredContent"]["ctx_id"], template)
        await external.file_invites(service, call.store, call.org_id, doc)
        return debates.view(doc)

    @service.job_tool(access="write", resumable=True, budget_s=3600, start_check=_may_run)
    async def run(debate_id: str, job: JobContext) -> dict[str, Any]:
        """Run a created debate to its outcome as a job (answers at once; progress about every
        second; a stopped replica's run resumes from its last turn). A debate runs once: another run of
        it fails `conflict` and does nothing."""
        doc = await debates.find(job.store, debate_id)
        await external.seats_ready(job.store, doc)
        coll = await debates.collection(job.store)
        claim = {"_id": debate_id, "$or": [{"status": "created"}, {"status": "running", "job_id": job.id}]}
        took = await coll.update_one(
            claim, {"$set": {"status": "running", "job_id": job.id, "started_at": now()}}
        )
        if took.matched_count == 0:
            raise _runs_once(await debates.current(job.store, debate_id))
        proto = protocol(doc["protocol"])
        runner = await Runner.open(
            job, doc, settings, limits_for(job.tier).max_tokens, proto.planned_turns(doc)
        )
        status = "succeeded"
        try:
            try:
                outcome = await proto.run(doc, runner)
            except Stopped as stop:
                status, outcome = stop.status, {"answer": None, "stopped": stop.message}
            await runner.flush()
        except MeshException as exc:
            with contextlib.suppress(MeshException):
                await runner.flush()
            await _finish(coll, doc, job, "failed", None, runner, f"{exc.error.code}: {exc.error.message}")
            raise
        return debates.view(await _finish(coll, doc, job, status, outcome, runner, None))

    @service.tool(access="read", open_world=False)
    async def get(debate_id: str, ctx: Context) -> dict[str, Any]:
        """A debate: spec, status, outcome, turns taken, tokens and cost, its job and transcript context."""
        return debates.view(await debates.current(call_of(ctx).store, debate_id))

    @service.tool(access="read", name="list", open_world=False)
    async def list_(
        ctx: Context, status: str | None = None, protocol: str | None = None, limit: int = 20
    ) -> dict[str, Any]:
        """Your debates, newest first (filtered by status or protocol)."""
        return {"debates": await debates.listing(call_of(ctx).store, status, protocol, limit)}

    @service.tool(access="read", open_world=False)
    async def transcript(
        debate_id: str, ctx: Context, after_turn: int = -1, owner_org: str | None = None
    ) -> dict[str, Any]:
        """The turns taken so far, in order (participant, role, round, model, text, tokens), after
        turn `after_turn` (turns count from 0). owner_org: another org's debate you hold an
        accepted seat in."""
        call = call_of(ctx)
        store = (
            call.store if owner_org is None else (await external.joined(call, owner_org, debate_id))[0].store
        )
        return await debates.transcript(store, debate_id, after_turn)

    @service.tool(access="write", idempotent=True, destructive=True, open_world=False)
    async def cancel(debate_id: str, ctx: Context) -> dict[str, Any]:
        """Stop a debate: one not started is cancelled at once; a running one after the turn in
        flight (status cancelling, then cancelled). Finished debates are returned unchanged."""
        return await debates.cancel(call_of(ctx).store, debate_id)

    @service.tool(access="write", idempotent=True, destructive=True, budget_s=60)
    async def delete(debate_id: str, ctx: Context) -> dict[str, Any]:
        """Delete a debate that is not running: its record, turns, invitations and its transcript
        context."""
        call = call_of(ctx)
        doc = await debates.current(call.store, debate_id)
        if doc["status"] in ("running", "cancelling"):
            raise MeshException(ErrorCode.CONFLICT, f"debate {debate_id} is {doc['status']}: cancel it first")
        try:
            await call.call_tool("context", "delete", {"ctx_id": doc["ctx_id"]}, on_progress=None)
        except MeshException as exc:
            if exc.error.code is not ErrorCode.NOT_FOUND:  # already gone is fine
                raise
        for kind in ("turns", "invites"):
            await (await call.store.collection(kind)).delete_many({"debate_id": debate_id})
        await (await debates.collection(call.store)).delete_one({"_id": debate_id})
        return {"deleted": debate_id}

    @service.tool(access="write", idempotent=True, destructive=True, open_world=False)
    async def template_save(
        name: str,
        ctx: Context,
        protocol: str = "society",
        participants: list[dict[str, Any]] | None = None,
        rounds: int = 2,
        judge: dict[str, Any] | None = None,
        summarizer: dict[str, Any] | None = None,
        simultaneous: bool = False,
    ) -> dict[str, Any]:
        """Save (or replace) a template of your org: protocol, participants, rounds, judge,
        summarizer, simultaneous, checked as create checks them."""
        call = call_of(ctx)
        raw = {
            "protocol": protocol,
            "participants": participants or [],
            "rounds": rounds,
            "judge": judge,
            "summarizer": summarizer,
            "simultaneous": simultaneous,
        }
        await _check_models(call, debates.spec_of(raw, limits_for(call.stamp.tier)))
        return await debates.template_save(call.store, name, raw)

    @service.tool(access="read", open_world=False)
    async def templates(ctx: Context) -> dict[str, Any]:
        """Your org's templates."""
        return {"templates": await debates.templates(call_of(ctx).store)}

    @service.tool(access="write", idempotent=True, destructive=True, open_world=False)
    async def template_delete(name: str, ctx: Context) -> dict[str, Any]:
        """Delete one of your templates."""
        return await debates.template_delete(call_of(ctx).store, name)

    @service.tool(access="read", name="analytics", open_world=False, budget_s=60)
    async def analytics_(ctx: Context) -> dict[str, Any]:
        """Your debates summed up: by protocol (debates, rounds until the answer stopped changing,
        agreement, judge early stops, tokens, cost), tokens and cost by model, suggestions, and
        anonymized aggregates across orgs (once at least 5 orgs contribute)."""
        call = call_of(ctx)
        return await analytics.org_report(call.store, call.state(DebateApp).comparative)

    # -- participants from other orgs (external.py) ------------------------------------------

    @service.tool(access="read", open_world=False)
    async def invitations(ctx: Context) -> dict[str, Any]:
        """Invitations other orgs gave your org to seats in their debates, with their status."""
        return {"invitations": await external.invitations(call_of(ctx))}

    @service.tool(access="write", idempotent=True, destructive=False, open_world=False)
    async def invitation_respond(invite_id: str, accept: bool, ctx: Context) -> dict[str, Any]:
        """Accept or decline an invitation (until the owner revokes it)."""
        return await external.respond(call_of(ctx), invite_id, accept)

    @service.tool(access="write", idempotent=True, destructive=True, open_world=False)
    async def invite_revoke(debate_id: str, participant: str, ctx: Context) -> dict[str, Any]:
        """Take back the invitation of one of your debate's external seats (p1, p2, ...)."""
        call = call_of(ctx)
        await debates.find(call.store, debate_id)
        return await external.revoke(call.store, debate_id, participant)

    @service.tool(access="read", open_world=False)
    async def joined_get(owner_org: str, debate_id: str, ctx: Context) -> dict[str, Any]:
        """A debate of another org you hold an accepted seat in: topic, participants, status,
        outcome, and when it is your seat's turn, the prompt to answer."""
        shared, debate = await external.joined(call_of(ctx), owner_org, debate_id)
        return external.shared_view(debate, shared.grant)

    @service.tool(access="write", idempotent=False, destructive=False, budget_s=300)
    async def contribute(
        owner_org: str, debate_id: str, ctx: Context, text: str | None = None, model: str | None = None
    ) -> dict[str, Any]:
        """Your seat's turn in another org's debate: your own text, or (no text) generated by
        mcp-llm from the awaited prompt with your org's model (billed to your org)."""
        return await external.contribute(
            call_of(ctx), owner_org, debate_id, text, model, settings.turn_max_tokens
        )

    return service


async def _finish(
    coll: Any,
    doc: dict[str, Any],
    job: JobContext,
    status: str,
    outcome: dict[str, Any] | None,
    runner: Runner,
    error: str | None,
) -> dict[str, Any]:
    at = now()
    done = {
        "status": status,
        "outcome": outcome,
        "error": error,
        "turns": len(runner.done),
        "tokens": runner.tokens,
        "cost_usd": round(runner.cost_usd, 9),
        "rounds_run": max((r["round"] for r in runner.done), default=0),
        "finished_at": at,
        "updated_at": at,
    }
    await coll.update_one({"_id": doc["_id"], "job_id": job.id}, {"$set": done})
    return {**doc, **done, "job_id": job.id}
