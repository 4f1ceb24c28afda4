"""mcp-debate end to end: the debate service, mcp-llm in front of a scripted OpenAI-compatible
fake provider and mcp-context on one bus, behind the real gateway (a debate's run is a job that
calls llm and context as the debate's org on its job ticket). Each protocol runs to its outcome,
turns land in the transcript context in order, a killed replica's debate resumes without
repeating a turn, cancel stops further LLM calls, orgs are isolated and billed for their own turns."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from mcpmesh.context import ContextSettings
from mcpmesh.context import build_service as build_context
from mcpmesh.debate import DebateSettings, analytics, limits
from mcpmesh.debate import build_service as build_debate
from mcpmesh.llm import LlmSettings
from mcpmesh.llm import build_service as build_llm
from mcpmesh.llm.testing import FakeProvider
from mcpmesh.secrets import new_master_key_entry
from mcpmesh.service import JobSettings, ServiceSettings
from mcpmesh.service.testing import ServiceHarness, internals_in
from tests.gateway.conftest import Gateway, Mesh
from tests.gateway.task_client import Session
from tests.gateway.test_streaming import sse_messages

FAST = JobSettings(lease_s=1.2, heartbeat_s=0.1, sweep_s=0.2, retention_h=1.0)
#: A debate runs on its starter's key: llm and context are called with that key's scopes.
SCOPES = ["debate:read", "debate:write", "llm:read", "context:read", "context:write"]
WAIT_S = 30.0


@dataclass
class Debates:
    mesh: Mesh
    gw: Gateway
    fake: FakeProvider

    async def replica(self) -> ServiceHarness:
        settings = ServiceSettings(
            mongodb_url=self.mesh.mongo_url, mongodb_database=self.mesh.database + "_debate", jobs=FAST
        )
        return await self.mesh.service(
            build_debate(DebateSettings(external_poll_s=0.05, compare_interval_s=0.2)), settings
        )

    async def result(self, key: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
        status, body, _ = await self.gw.rpc("tools/call", {"name": name, "arguments": args}, key=key)
        assert status == 200, body
        return body["result"]  # type: ignore[no-any-return]

    async def ok(self, key: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
        result = await self.result(key, name, args)
        assert not result.get("isError"), result
        return result["structuredContent"]  # type: ignore[no-any-return]

    async def error(self, key: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
        result = await self.result(key, name, args)
        assert result.get("isError"), result
        return result["structuredContent"]  # type: ignore[no-any-return]

    async def run(self, key: str, args: dict[str, Any]) -> tuple[str, str]:
        """Create and start a debate: (debate id, job id)."""
        debate = await self.ok(key, "debate_create", args)
        job = await self.ok(key, "debate_run", {"debate_id": debate["debate_id"]})
        return debate["debate_id"], job["job_id"]

    async def settled(self, key: str, debate_id: str) -> dict[str, Any]:
        seen: list[dict[str, Any]] = []

        async def poll() -> dict[str, Any]:
            while True:
                seen[:] = [await self.ok(key, "debate_get", {"debate_id": debate_id})]
                if seen[0]["status"] not in ("created", "running", "cancelling"):
                    return seen[0]
                await asyncio.sleep(0.05)

        try:
            return await asyncio.wait_for(poll(), WAIT_S)
        except TimeoutError:
            job = seen and await self.ok(key, "debate_job_status", {"job_id": seen[0]["job_id"]})
            raise AssertionError(f"the debate did not settle: {seen} {job}") from None


async def until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while True:
            if condition():
                return
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), WAIT_S)


def speaker(body: dict[str, Any]) -> str:
    found = re.match(r"You are (.+?), taking part", body["messages"][0]["content"])
    assert found is not None
    return found.group(1)


def scripted(replies: dict[str, list[str]]) -> Any:
    """An answer function: each speaker's replies in order (the last one repeats)."""
    said: Counter[str] = Counter()

    def answer(body: dict[str, Any]) -> str:
        name = speaker(body)
        said[name] += 1
        mine = replies[name]
        return mine[min(said[name], len(mine)) - 1]

    return answer


@pytest.fixture
async def debates(mesh: Mesh) -> AsyncIterator[Debates]:
    async with FakeProvider(slow_s=1.0) as fake:
        llm = LlmSettings(
            providers=[
                {"name": "mock", "kind": "mesh-offline"},
                {
                    "name": "sysa",
                    "api_base": fake.url,
                    "models": [{"name": "big", "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}],
                },
            ],
            aliases={"default": "big"},
            provider_timeout_s=10.0,
            allow_private_endpoints=True,
        )
        stores = {
            name: ServiceSettings(
                mongodb_url=mesh.mongo_url,
                mongodb_database=mesh.database + name,
                secrets_keys=new_master_key_entry("t1"),
            )
            for name in ("_llm", "_ctx")
        }
        await mesh.service(build_llm(llm), stores["_llm"])
        await mesh.service(build_context(ContextSettings(sweep_interval_s=0)), stores["_ctx"])
        gw = await mesh.gateway()
        d = Debates(mesh, gw, fake)
        await d.replica()
        await mesh.wait_discovered("llm", "context", "debate")
        yield d


async def transcript_entries(d: Debates, key: str, ctx_id: str) -> list[dict[str, Any]]:
    got = await d.ok(key, "context_get", {"ctx_id": ctx_id})
    return got["entries"]  # type: ignore[no-any-return]


async def test_society_of_minds_revises_on_the_others_answers_and_votes(debates: Debates) -> None:
    d = debates
    org, key = await d.mesh.tenant(scopes=SCOPES)
    d.fake.answer = scripted(
        {
            "Ada": ["Ada one\nANSWER: 42"],
            "Bo": ["Bo one\nANSWER: 42"],
            "Cy": ["Cy one\nANSWER: 41", "Cy two, convinced\nANSWER: 42"],
        }
    )
    people = [{"name": n, "instructions": f"You are careful, {n}."} for n in ("Ada", "Bo", "Cy")]
    debate_id, _ = await d.run(key, {"topic": "What is 6 x 7?", "participants": people, "rounds": 2})
    view = await d.settled(key, debate_id)
    assert view["status"] == "succeeded", view
    outcome = view["outcome"]
    assert outcome["answer"] == "42" and outcome["consensus"] is True and outcome["agreement"] == 1.0
    assert outcome["votes"] == {"42": 3}
    assert outcome["stable_round"] == 2  # Cy changed its answer in round 2
    # Round 2: each agent's prompt holds exactly the other agents' round-1 answers.
    prompts = [(speaker(r.body), r.body["messages"][1]["content"]) for r in d.fake.requests]
    assert [s for s, _ in prompts] == ["Ada", "Bo", "Cy"] * 2
    for name, prompt in prompts[3:]:
        others = {"Ada one", "Bo one", "Cy one"} - {f"{name} one"}
        assert all(o in prompt for o in others) and f"{name} one" not in prompt
        assert "Cy two" not in prompt
    # The transcript context holds one entry per turn, in order, naming turn, participant, round, model.
    entries = await transcript_entries(d, key, view["ctx_id"])
    assert [e["name"] for e in entries] == [f"t{i}.p{i % 3 + 1}.r{i // 3 + 1}.big" for i in range(6)]
    assert entries[5]["content"] == "Cy two, convinced\nANSWER: 42"
    assert view["turns"] == 6 and view["tokens"] == 6 * (11 + 7)
    # Tokens are counted to the debate's org, once per turn.
    usage = await d.ok(key, "llm_usage", {})
    assert usage["totals"]["prompt_tokens"] == 6 * 11 and usage["totals"]["calls"] == 6
    assert org


async def test_mad_judge_stops_early_with_its_answer_and_reasons(debates: Debates) -> None:
    d = debates
    _, key = await d.mesh.tenant(scopes=SCOPES)
    d.fake.answer = scripted(
        {
            "Pro": ["Yes, because A."],
            "Con": ["No, because B."],
            "Judge": ["CONTINUE", "DECISION: yes\nREASONS: A outweighs B."],
        }
    )
    debate_id, _ = await d.run(
        key,
        {
            "topic": "Should we ship on Friday?",
            "protocol": "mad",
            "participants": [{"name": "Pro"}, {"name": "Con"}],
            "rounds": 4,
        },
    )
    view = await d.settled(key, debate_id)
    assert view["status"] == "succeeded", view
    assert view["outcome"] == {
        "answer": "yes",
        "reasons": "A outweighs B.",
        "decided_round": 2,
        "early_stop": True,
        "stable_round": 2,
    }
    assert [speaker(r.body) for r in d.fake.requests] == ["Pro", "Con", "Judge"] * 2
    assert view["judge"]["kind"] == "system"


async def test_panel_speaks_in_order_and_the_summary_is_the_answer(debates: Debates) -> None:
    d = debates
    _, key = await d.mesh.tenant(scopes=SCOPES)
    d.fake.answer = scripted(
        {"Ann": ["Ann speaks"], "Ben": ["Ben speaks"], "Summarizer": ["summary 1", "summary 2"]}
    )
    debate_id, _ = await d.run(
        key,
        {
            "topic": "Tabs or spaces?",
            "protocol": "panel",
            "participants": [{"name": "Ann"}, {"name": "Ben"}],
            "summarizer": {"system": "summarizer"},
            "rounds": 2,
        },
    )
    view = await d.settled(key, debate_id)
    assert view["outcome"]["answer"] == "summary 2"
    assert [speaker(r.body) for r in d.fake.requests] == ["Ann", "Ben", "Summarizer"] * 2
    # Ben's first prompt holds what Ann said before him.
    assert "Ann speaks" in d.fake.requests[1].body["messages"][1]["content"]
    got = await d.ok(key, "debate_transcript", {"debate_id": debate_id, "after_turn": 3})
    assert [(t["name"], t["round"]) for t in got["turns"]] == [("Ben", 2), ("Summarizer", 2)]


async def test_a_simultaneous_panel_round_hides_the_rounds_other_statements(debates: Debates) -> None:
    d = debates
    _, key = await d.mesh.tenant(scopes=SCOPES)
    d.fake.answer = scripted({"Ann": ["Ann r1", "Ann r2"], "Ben": ["Ben r1", "Ben r2"]})
    people = [{"name": "Ann"}, {"name": "Ben"}]
    args = {"topic": "Tabs?", "protocol": "panel", "participants": people, "rounds": 2, "simultaneous": True}
    debate_id, _ = await d.run(key, args)
    assert (await d.settled(key, debate_id))["outcome"]["statements"] == {"Ann": "Ann r2", "Ben": "Ben r2"}
    prompts = [r.body["messages"][1]["content"] for r in d.fake.requests]
    assert "Ann r1" not in prompts[1]  # Ben, round 1
    assert "Ann r1" in prompts[3] and "Ben r1" in prompts[3] and "Ann r2" not in prompts[3]  # Ben, round 2


async def test_a_killed_replicas_debate_resumes_without_repeating_a_turn(debates: Debates) -> None:
    d = debates
    _, key = await d.mesh.tenant(scopes=SCOPES)
    d.fake.slow_s = 5.0
    d.fake.script("ok", "ok", "slow")  # the third turn hangs in the provider
    people = [{"name": "Ada"}, {"name": "Bo"}]
    debate_id, job_id = await d.run(key, {"topic": "Is P = NP?", "participants": people, "rounds": 3})
    first = d.mesh.harnesses["debate"]

    await until(lambda: len(d.fake.requests) >= 3)
    await d.replica()  # the survivor
    assert first.server is not None and first.server.micro is not None
    await first.server.micro.stop()  # no new requests reach the first replica...
    await first.kill()  # ...and it dies with its run in the middle of a turn
    view = await d.settled(key, debate_id)
    assert view["status"] == "succeeded", view
    job = await d.ok(key, "debate_job_status", {"job_id": job_id})
    assert job["attempts"] == 2
    # Six turns, each once in the records and the transcript; only the interrupted one was asked twice.
    got = await d.ok(key, "debate_transcript", {"debate_id": debate_id})
    assert [t["idx"] for t in got["turns"]] == list(range(6))
    entries = await transcript_entries(d, key, view["ctx_id"])
    assert [e["name"].split(".")[0] for e in entries] == [f"t{i}" for i in range(6)]
    assert len(d.fake.requests) == 7


async def test_cancel_stops_further_llm_calls(debates: Debates) -> None:
    d = debates
    _, key = await d.mesh.tenant(scopes=SCOPES)
    d.fake.script("slow")
    people = [{"name": "Ada"}, {"name": "Bo"}]
    debate_id, _ = await d.run(key, {"topic": "Cats or dogs?", "participants": people, "rounds": 3})

    await until(lambda: bool(d.fake.requests))
    cancelling = await d.ok(key, "debate_cancel", {"debate_id": debate_id})
    assert cancelling["status"] == "cancelling"
    view = await d.settled(key, debate_id)
    assert view["status"] == "cancelled" and view["turns"] == 1
    assert len(d.fake.requests) == 1


async def test_another_org_sees_nothing_of_a_debate(debates: Debates) -> None:
    d = debates
    _, key_a = await d.mesh.tenant(scopes=SCOPES)
    _, key_b = await d.mesh.tenant(scopes=SCOPES, name="Globex")
    people = [{"name": "Ada"}, {"name": "Bo"}]
    debate_id, job_id = await d.run(key_a, {"topic": "Secret plans", "participants": people, "rounds": 1})
    view = await d.settled(key_a, debate_id)
    for tool, args in (
        ("debate_get", {"debate_id": debate_id}),
        ("debate_transcript", {"debate_id": debate_id}),
        ("debate_cancel", {"debate_id": debate_id}),
        ("debate_job_status", {"job_id": job_id}),
        ("context_get", {"ctx_id": view["ctx_id"]}),
    ):
        assert (await d.error(key_b, tool, args))["code"] == "not_found", tool
    assert (await d.ok(key_b, "debate_list", {}))["debates"] == []
    assert (await d.ok(key_b, "debate_analytics", {}))["debates"] == 0
    assert (await d.error(key_b, "debate_delete", {"debate_id": debate_id}))["code"] == "not_found"
    # B starting A's debate runs nothing: refused at the start, no job.
    assert (await d.error(key_b, "debate_run", {"debate_id": debate_id}))["code"] == "not_found"
    assert (await d.ok(key_b, "debate_jobs", {}))["jobs"] == []
    assert (await d.ok(key_b, "llm_usage", {}))["totals"]["calls"] == 0
    assert (await d.ok(key_a, "llm_usage", {}))["totals"]["calls"] == 2
    # The owner deletes it: record, turns and transcript context go.
    assert await d.ok(key_a, "debate_delete", {"debate_id": debate_id}) == {"deleted": debate_id}
    assert (await d.error(key_a, "debate_get", {"debate_id": debate_id}))["code"] == "not_found"
    assert (await d.error(key_a, "context_get", {"ctx_id": view["ctx_id"]}))["code"] == "not_found"


async def test_bad_input_is_a_clear_error(debates: Debates) -> None:
    d = debates
    own, key = await d.mesh.tenant(scopes=SCOPES)
    _, free = await d.mesh.tenant(scopes=SCOPES, tier="free", name="Tiny")
    two = [{"name": "Ada"}, {"name": "Bo"}]
    cases = [
        (
            key,
            {"topic": "x", "protocol": "shouting", "participants": two},
            "invalid_request",
            "unknown protocol",
        ),
        (key, {"topic": "x", "participants": two, "rounds": 11}, "limit_exceeded", "over your tier's 10"),
        (key, {"topic": "  ", "participants": two}, "invalid_request", "topic must be"),
        (key, {"topic": "x", "protocol": "mad", "participants": two[:1]}, "invalid_request", "exactly 2"),
        (
            key,
            {"topic": "x", "participants": [*two, {"external_org": own, "name": "Me"}]},
            "invalid_request",
            "own org",
        ),
        (free, {"topic": "x", "participants": two}, "forbidden", "model 'default'"),
        (
            key,
            {"topic": "x", "participants": [{"name": "Ada", "model": "nosuch"}, two[1]]},
            "not_found",
            "nosuch",
        ),
    ]
    for k, args, code, says in cases:
        error = await d.error(k, "debate_create", args)
        assert error["code"] == code and says in error["message"], (args, error)
        assert internals_in(error["message"]) == []
    assert d.fake.requests == []


async def test_templates_are_the_orgs_own_and_start_debates(debates: Debates) -> None:
    d = debates
    _, key_a = await d.mesh.tenant(scopes=SCOPES)
    _, key_b = await d.mesh.tenant(scopes=SCOPES, name="Globex")
    saved = {
        "name": "duo",
        "protocol": "panel",
        "participants": [{"name": "Ann"}, {"name": "Ben"}],
        "rounds": 1,
    }
    await d.ok(key_a, "debate_template_save", saved)
    assert [t["name"] for t in (await d.ok(key_a, "debate_templates", {}))["templates"]] == ["duo"]
    assert (await d.ok(key_b, "debate_templates", {}))["templates"] == []
    assert (await d.error(key_b, "debate_create", {"topic": "x", "template": "duo"}))["code"] == "not_found"
    made = await d.ok(key_a, "debate_create", {"topic": "Lunch?", "template": "duo", "rounds": 2})
    assert (made["protocol"], made["rounds"], made["template"]) == ("panel", 2, "duo")
    assert [p["name"] for p in made["participants"]] == ["Ann", "Ben"]


async def test_a_turn_recorded_but_not_in_the_transcript_is_appended_once_without_asking_again(
    debates: Debates,
) -> None:
    """A run that stopped between a turn's record and its transcript entry: the next run appends
    the recorded turn (its text as recorded) and asks the model only for the turns after it."""
    d = debates
    org, key = await d.mesh.tenant(scopes=SCOPES)
    made = await d.ok(
        key,
        "debate_create",
        {"topic": "Why?", "participants": [{"name": "Ada"}, {"name": "Bo"}], "rounds": 1},
    )
    store = d.mesh.harnesses["debate"].service.store.for_tenant(org)
    recorded = {
        "_id": f"{made['debate_id']}:00000", "debate_id": made["debate_id"], "protocol": "society",
        "idx": 0, "pid": "p1", "name": "Ada", "role": "debater", "round": 1, "model": "big",
        "requested": "default", "served_by": "sysa/big", "content": "recorded\nANSWER: 1",
        "prompt_tokens": 11, "completion_tokens": 7, "cost_usd": 0.0, "at": None,
    }  # fmt: skip
    await (await store.collection("turns")).insert_one(recorded)
    await d.ok(key, "debate_run", {"debate_id": made["debate_id"]})
    view = await d.settled(key, made["debate_id"])
    assert view["status"] == "succeeded" and view["turns"] == 2
    assert [speaker(r.body) for r in d.fake.requests] == ["Bo"]
    entries = await transcript_entries(d, key, view["ctx_id"])
    assert [(e["name"], e["content"]) for e in entries] == [
        ("t0.p1.r1.big", "recorded\nANSWER: 1"),
        ("t1.p2.r1.big", "hello from the fake"),
    ]


async def test_job_cancel_also_ends_the_debate(debates: Debates) -> None:
    d = debates
    _, key = await d.mesh.tenant(scopes=SCOPES)
    d.fake.script("slow")
    people = [{"name": "Ada"}, {"name": "Bo"}]
    debate_id, job_id = await d.run(key, {"topic": "Tea?", "participants": people, "rounds": 2})
    await until(lambda: bool(d.fake.requests))
    await d.ok(key, "debate_job_cancel", {"job_id": job_id})
    view = await d.settled(key, debate_id)
    assert view["status"] == "cancelled" and view["turns"] == 0
    await asyncio.sleep(1.5)  # past the slow answer: had the run gone on, it would have asked again
    assert len(d.fake.requests) == 1


async def test_an_invited_org_contributes_its_seats_turns_on_its_own_bill(debates: Debates) -> None:
    d = debates
    _, key_a = await d.mesh.tenant(scopes=SCOPES)
    org_b, key_b = await d.mesh.tenant(scopes=SCOPES, name="Globex")
    _, key_c = await d.mesh.tenant(scopes=SCOPES, name="Initech")
    seats = [{"name": "Ann"}, {"external_org": org_b, "name": "Reviewer", "role": "opponent"}]
    made = await d.ok(
        key_a, "debate_create", {"topic": "Ship it?", "protocol": "panel", "participants": seats, "rounds": 1}
    )
    debate_id = made["debate_id"]
    assert made["participants"][1]["kind"] == "external"
    # Not accepted yet: the run refuses at the start (no job), the debate stays created.
    refused = await d.error(key_a, "debate_run", {"debate_id": debate_id})
    assert refused["code"] == "conflict" and "p2 (" in refused["message"] and "invited" in refused["message"]
    assert (await d.ok(key_a, "debate_jobs", {}))["jobs"] == []
    assert (await d.ok(key_a, "debate_get", {"debate_id": debate_id}))["status"] == "created"
    [invite] = (await d.ok(key_b, "debate_invitations", {}))["invitations"]
    assert invite["status"] == "invited" and invite["debate"]["your_seat"] == "p2"
    owner = invite["owner_org"]
    # An uninvited org sees nothing, whatever it asks.
    assert (await d.ok(key_c, "debate_invitations", {}))["invitations"] == []
    for tool, args in (
        ("debate_joined_get", {"owner_org": owner, "debate_id": debate_id}),
        ("debate_contribute", {"owner_org": owner, "debate_id": debate_id, "text": "me too"}),
        ("debate_invitation_respond", {"invite_id": invite["invite_id"], "accept": True}),
    ):
        assert (await d.error(key_c, tool, args))["code"] == "not_found", tool
    # Invited but not accepted: not joined yet.
    assert (await d.error(key_b, "debate_joined_get", {"owner_org": owner, "debate_id": debate_id}))[
        "code"
    ] == "not_found"
    await d.ok(key_b, "debate_invitation_respond", {"invite_id": invite["invite_id"], "accept": True})
    await d.ok(key_a, "debate_run", {"debate_id": debate_id})  # accepted: it runs now

    async def my_turn() -> dict[str, Any]:
        for _ in range(400):
            seen = await d.ok(key_b, "debate_joined_get", {"owner_org": owner, "debate_id": debate_id})
            if seen["your_turn"]:
                return seen
            await asyncio.sleep(0.05)
        raise AssertionError("the seat's turn never came")

    seen = await my_turn()
    # The seat is shown the prompt to answer: the discussion so far (Ann spoke first).
    assert "Ann (debater, round 1): hello from the fake" in seen["awaiting"]["messages"][1]["content"]
    await d.ok(key_b, "debate_contribute", {"owner_org": owner, "debate_id": debate_id})
    again = await d.error(
        key_b, "debate_contribute", {"owner_org": owner, "debate_id": debate_id, "text": "twice"}
    )
    assert again["code"] == "conflict"
    view = await d.settled(key_a, debate_id)
    assert view["status"] == "succeeded" and view["turns"] == 2
    entries = await transcript_entries(d, key_a, view["ctx_id"])
    assert [e["name"].split(".")[1] for e in entries] == ["p1", "p2"]
    seat_view = await d.ok(key_b, "debate_transcript", {"debate_id": debate_id, "owner_org": owner})
    assert [t["name"] for t in seat_view["turns"]] == ["Ann", "Reviewer"]
    assert (await d.error(key_c, "debate_transcript", {"debate_id": debate_id, "owner_org": owner}))[
        "code"
    ] == "not_found"
    # Each org paid for its own turn.
    assert (await d.ok(key_a, "llm_usage", {}))["totals"]["calls"] == 1
    assert (await d.ok(key_b, "llm_usage", {}))["totals"]["calls"] == 1
    assert view["tokens"] == 18  # the owner's turn only


async def test_declined_and_revoked_invitations_reach_nothing(debates: Debates) -> None:
    d = debates
    _, key_a = await d.mesh.tenant(scopes=SCOPES)
    org_b, key_b = await d.mesh.tenant(scopes=SCOPES, name="Globex")
    seats = [{"name": "Ann"}, {"external_org": org_b, "name": "Reviewer"}]
    made = await d.ok(key_a, "debate_create", {"topic": "Why?", "protocol": "panel", "participants": seats})
    [invite] = (await d.ok(key_b, "debate_invitations", {}))["invitations"]
    assert (
        await d.ok(key_b, "debate_invitation_respond", {"invite_id": invite["invite_id"], "accept": False})
    )["status"] == "declined"
    [declined] = (await d.ok(key_b, "debate_invitations", {}))["invitations"]
    assert declined["status"] == "declined"
    args = {"owner_org": invite["owner_org"], "debate_id": made["debate_id"]}
    assert (await d.error(key_b, "debate_joined_get", args))["code"] == "not_found"
    await d.ok(key_b, "debate_invitation_respond", {"invite_id": invite["invite_id"], "accept": True})
    assert (await d.ok(key_b, "debate_joined_get", args))["your_seat"] == "p2"
    await d.ok(key_a, "debate_invite_revoke", {"debate_id": made["debate_id"], "participant": "p2"})
    assert (await d.error(key_b, "debate_joined_get", args))["code"] == "not_found"
    assert (await d.ok(key_b, "debate_invitations", {}))["invitations"] == []
    revoked = await d.error(
        key_b, "debate_invitation_respond", {"invite_id": invite["invite_id"], "accept": True}
    )
    assert revoked["code"] == "not_found"


async def test_a_seat_revoked_or_declined_after_the_start_is_skipped_not_waited_for(
    debates: Debates,
) -> None:
    """The run reads each seat's invitation again at its turns: a seat its org declined while it
    was awaited, and one the owner revoked before its turn, are recorded as not given at once
    (the wait for a contribution is an hour here) and the debate goes on."""
    d = debates
    _, key_a = await d.mesh.tenant(scopes=SCOPES)
    org_b, key_b = await d.mesh.tenant(scopes=SCOPES, name="Globex")
    org_c, key_c = await d.mesh.tenant(scopes=SCOPES, name="Initech")
    seats = [{"name": "Ann"}, {"external_org": org_b, "name": "Bea"}, {"external_org": org_c, "name": "Cy"}]
    made = await d.ok(
        key_a, "debate_create", {"topic": "Go?", "protocol": "panel", "participants": seats, "rounds": 2}
    )
    debate_id = made["debate_id"]
    invites = {}
    for k in (key_b, key_c):
        [invite] = (await d.ok(k, "debate_invitations", {}))["invitations"]
        await d.ok(k, "debate_invitation_respond", {"invite_id": invite["invite_id"], "accept": True})
        invites[k] = invite
    await d.ok(key_a, "debate_run", {"debate_id": debate_id})
    seat_b = {"owner_org": invites[key_b]["owner_org"], "debate_id": debate_id}
    for _ in range(400):
        if (await d.ok(key_b, "debate_joined_get", seat_b))["your_turn"]:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("Bea's turn never came")
    await d.ok(key_a, "debate_invite_revoke", {"debate_id": debate_id, "participant": "p3"})
    await d.ok(
        key_b, "debate_invitation_respond", {"invite_id": invites[key_b]["invite_id"], "accept": False}
    )
    view = await d.settled(key_a, debate_id)
    assert view["status"] == "succeeded" and view["turns"] == 6
    got = await d.ok(key_a, "debate_transcript", {"debate_id": debate_id})
    assert [(t["name"], t["content"]) for t in got["turns"]] == [
        ("Ann", "hello from the fake"),
        ("Bea", "(no contribution: the seat's invitation was declined)"),
        ("Cy", "(no contribution: the seat's invitation was revoked)"),
        ("Ann", "hello from the fake"),
        ("Bea", "(no contribution: the seat's invitation was declined)"),
        ("Cy", "(no contribution: the seat's invitation was revoked)"),
    ]
    assert (await d.error(key_b, "debate_contribute", {**seat_b, "text": "late"}))["code"] == "not_found"
    entries = await transcript_entries(d, key_a, view["ctx_id"])
    assert [e["name"].split(".")[1] for e in entries] == ["p1", "p2", "p3"] * 2


async def test_running_needs_the_scopes_of_the_calls_it_makes_checked_at_the_start(debates: Debates) -> None:
    """A debate runs on the key that starts it: a key without llm:read, context:read and
    context:write is refused at the start with a clear error, and no job is created."""
    d = debates
    org, key = await d.mesh.tenant(scopes=SCOPES)
    people = [{"name": "Ada"}, {"name": "Bo"}]
    made = await d.ok(key, "debate_create", {"topic": "Who?", "participants": people, "rounds": 1})
    run = {"debate_id": made["debate_id"]}
    for scopes, lacks in (
        (["debate:read", "debate:write"], "llm:read, context:read, context:write"),
        (["debate:write", "llm:read", "context:write"], "context:read"),
    ):
        narrow = await d.mesh.admin(
            "POST", f"/admin/orgs/{org}/keys", {"name": "n", "scopes": scopes}, expect=201
        )
        error = await d.error(narrow["secret"], "debate_run", run)
        assert error["code"] == "forbidden" and error["message"].startswith(f"this key lacks {lacks}: "), (
            error
        )
    assert (await d.ok(key, "debate_jobs", {}))["jobs"] == []
    assert (await d.ok(key, "debate_get", run))["status"] == "created" and d.fake.requests == []
    await d.ok(key, "debate_run", run)
    assert (await d.settled(key, made["debate_id"]))["status"] == "succeeded"


async def test_analytics_per_org_and_across_orgs_only_from_five(debates: Debates) -> None:
    d = debates
    service = d.mesh.harnesses["debate"].service
    comparative = analytics.Comparative()
    keys = []
    d.fake.answer = scripted({"Ada": ["ANSWER: 1"], "Bo": ["ANSWER: 2", "ANSWER: 1"]})
    for i in range(5):
        _, key = await d.mesh.tenant(scopes=SCOPES, name=f"Org{i}")
        keys.append(key)
        people = [{"name": "Ada"}, {"name": "Bo"}]
        debate_id, _ = await d.run(key, {"topic": "1 or 2?", "participants": people, "rounds": 3})
        assert (await d.settled(key, debate_id))["status"] == "succeeded"
        d.fake.answer = scripted({"Ada": ["ANSWER: 1"], "Bo": ["ANSWER: 2", "ANSWER: 1"]})
        await analytics.refresh(service, comparative)
        assert comparative.view()["shown"] is (i == 4), i
    mine = await d.ok(keys[0], "debate_analytics", {})
    society = mine["by_protocol"]["society"]
    assert (mine["debates"], society["stable_round"], society["rounds_run"], society["agreement"]) == (
        1,
        2,
        3,
        1.0,
    )
    assert mine["by_model"]["big"]["turns"] == 6
    [suggestion] = mine["suggestions"]
    assert "set rounds to 2" in suggestion
    # The replica's own background refresh shows the same aggregates through the tool.
    for _ in range(200):
        shown = (await d.ok(keys[1], "debate_analytics", {}))["comparative"]
        if shown["shown"]:
            break
        await asyncio.sleep(0.05)
    assert shown["orgs"] == 5 and shown["by_protocol"]["society"]["debates"] == 5
    assert not any(key[:12] in str(shown) for key in keys) and "org-" not in str(shown)


async def test_a_debate_stops_when_its_tier_token_budget_is_spent_and_runs_once(
    debates: Debates, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = debates
    monkeypatch.setitem(
        limits.TIER_LIMITS, "pro", limits.DebateLimits(max_rounds=10, max_participants=8, max_tokens=30)
    )
    _, key = await d.mesh.tenant(scopes=SCOPES)
    people = [{"name": "Ada"}, {"name": "Bo"}]
    debate_id, _ = await d.run(key, {"topic": "Long?", "participants": people, "rounds": 3})
    view = await d.settled(key, debate_id)
    # 18 tokens a turn: after two turns the 30-token budget is spent, the third is never asked.
    assert view["status"] == "budget_exhausted" and view["turns"] == 2 and len(d.fake.requests) == 2
    assert "token budget (30)" in view["outcome"]["stopped"]
    refused = await d.error(key, "debate_run", {"debate_id": debate_id})
    assert refused["code"] == "conflict" and "budget_exhausted" in refused["message"]
    assert len(d.fake.requests) == 2


async def test_racing_starts_run_a_debate_once(debates: Debates) -> None:
    d = debates
    _, key = await d.mesh.tenant(scopes=SCOPES)
    people = [{"name": "Ada"}, {"name": "Bo"}]
    made = await d.ok(key, "debate_create", {"topic": "Once?", "participants": people, "rounds": 2})
    starts = await asyncio.gather(
        *(d.result(key, "debate_run", {"debate_id": made["debate_id"]}) for _ in range(4))
    )
    jobs = [s["structuredContent"]["job_id"] for s in starts if not s.get("isError")]
    refused = [s["structuredContent"] for s in starts if s.get("isError")]
    assert jobs and all(r["code"] == "conflict" for r in refused)
    view = await d.settled(key, made["debate_id"])
    assert view["status"] == "succeeded" and view["job_id"] in jobs and len(d.fake.requests) == 4
    # The other jobs (starts that passed the check before the claim) ended conflict, having done nothing.
    for job_id in set(jobs) - {view["job_id"]}:
        for _ in range(400):
            status = await d.ok(key, "debate_job_status", {"job_id": job_id})
            if status["status"] not in ("queued", "running"):
                break
            await asyncio.sleep(0.05)
        assert status["status"] == "failed" and status["error"]["code"] == "conflict", status
    assert len((await d.ok(key, "debate_transcript", {"debate_id": made["debate_id"]}))["turns"]) == 4


async def test_a_debate_run_as_a_task_streams_its_progress_turn_by_turn(debates: Debates) -> None:
    d = debates
    _, key = await d.mesh.tenant(scopes=SCOPES)
    gw = await d.mesh.gateway(task_poll_s=0.05)  # a 2025-11-25 session: the run is an MCP task
    await d.mesh.wait_discovered("llm", "context", "debate")
    d.fake.slow_s = 1.1  # past DEBATE_PROGRESS_INTERVAL_S (1 s): every turn is reported
    d.fake.script("slow", "slow", "slow", "slow")
    people = [{"name": "Ada"}, {"name": "Bo"}]
    made = await d.ok(key, "debate_create", {"topic": "Stream?", "participants": people, "rounds": 2})
    async with httpx.AsyncClient(timeout=WAIT_S) as http:
        client = Session(http, gw.url, key)
        await client.open()
        task = await client.start("debate_run", {"debate_id": made["debate_id"]})
        resp = await client.post("tasks/result", {"taskId": task["taskId"], "_meta": {"progressToken": 7}})
    *notes, answer = sse_messages(resp.content)
    assert answer["result"]["structuredContent"]["status"] == "succeeded"
    seen = [(n["params"]["progress"], n["params"]["total"], n["params"]["message"]) for n in notes]
    assert [p for p, _, _ in seen] == sorted({p for p, _, _ in seen}) and len(seen) >= 2, seen
    assert all(total == 4 and re.fullmatch(r"round [12]: (Ada|Bo)", m) for _, total, m in seen), seen
    assert seen[-1] == (4, 4, "round 2: Bo")  # the last turn too, before the result
