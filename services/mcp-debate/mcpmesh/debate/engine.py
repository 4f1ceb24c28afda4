"""Running a debate turn by turn, as a durable job, exactly once per turn.

A turn is: the participant's chat through mcp-llm (as the debate's org, on the job's ticket),
its record in the org's `turns` collection (`_id = <debate>:<idx>`: the commit point and the
checkpoint), its entry in the transcript context in mcp-context, the debate's totals. A resumed
run loads the turn records and replays them to the protocol without calling the model; a
record not yet in the transcript (the run stopped between the two) is appended first — the
transcript's last entry names the last turn it holds, so nothing is appended twice.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from mcpmesh.debate.participants import system_prompt
from mcpmesh.debate.settings import DebateSettings
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.service import JobContext
from mcpmesh.store import Collection

_NAME_BAD = re.compile(r"[^A-Za-z0-9_.:-]")


class Stopped(Exception):
    """The debate ends before its protocol finished: cancelled, or its token budget spent."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def now() -> datetime:
    return datetime.now(UTC)


def entry_name(rec: dict[str, Any]) -> str:
    """The transcript entry's name: `t<idx>.<participant>.r<round>.<model>` (at most 64 chars)."""
    return _NAME_BAD.sub(":", f"t{rec['idx']}.{rec['pid']}.r{rec['round']}.{rec['model']}")[:64]


def turn_of(name: str | None) -> int:
    """The turn index an entry name carries (-1 for none)."""
    head = (name or "").split(".", 1)[0]
    return int(head[1:]) if head[:1] == "t" and head[1:].isdigit() else -1


def turn_record(
    debate: dict[str, Any], idx: int, p: dict[str, Any], round_: int, **fields: Any
) -> dict[str, Any]:
    """A turn's record (`_id = <debate>:<idx>`); `fields`: model, served_by, content, tokens, cost."""
    return {
        "_id": f"{debate['_id']}:{idx:05d}",
        "debate_id": debate["_id"],
        "protocol": debate["protocol"],
        "idx": idx,
        "pid": p["id"],
        "name": p["name"],
        "role": p["role"],
        "round": round_,
        "requested": p["model"],
        "at": now(),
        **fields,
    }


@dataclass
class Runner:
    """The `Turns` a protocol runs on, for one run of one debate."""

    job: JobContext
    debate: dict[str, Any]
    settings: DebateSettings
    max_tokens: int
    planned: int
    debates: Collection
    turns: Collection
    done: list[dict[str, Any]] = field(default_factory=list)
    taken: list[tuple[dict[str, Any], int, str]] = field(default_factory=list)
    tokens: int = 0
    cost_usd: float = 0.0

    @property
    def quote_chars(self) -> int:
        return self.settings.quote_chars

    @classmethod
    async def open(
        cls, job: JobContext, debate: dict[str, Any], settings: DebateSettings, max_tokens: int, planned: int
    ) -> Runner:
        debates, turns = await job.store.collection("debates"), await job.store.collection("turns")
        done = await turns.find({"debate_id": debate["_id"]}).sort("idx", 1).to_list(None)
        runner = cls(job, debate, settings, max_tokens, planned, debates, turns, done)
        runner.tokens = sum(r["prompt_tokens"] + r["completion_tokens"] for r in done)
        runner.cost_usd = sum(r["cost_usd"] for r in done)
        if done:
            got = await job.call_tool(
                "context", "get", {"ctx_id": debate["ctx_id"], "last_n": 1}, on_progress=None
            )
            entries = got["structuredContent"]["entries"]
            last = turn_of(entries[-1].get("name")) if entries else -1
            for rec in done[last + 1 :]:
                await runner._publish(rec)
        return runner

    def history(self) -> list[tuple[dict[str, Any], int, str]]:
        return self.taken

    async def turn(self, participant: dict[str, Any], round_: int, prompt: str) -> str:
        idx = len(self.taken)
        if idx < len(self.done):
            rec = self.done[idx]
            if (rec["pid"], rec["round"]) != (participant["id"], round_):
                raise MeshException(
                    ErrorCode.INTERNAL, f"debate {self.debate['_id']}: stored turn {idx} does not replay"
                )
        else:
            rec = await self._take(idx, participant, round_, prompt)
        self.taken.append((participant, round_, rec["content"]))
        return str(rec["content"])

    async def _take(self, idx: int, p: dict[str, Any], round_: int, prompt: str) -> dict[str, Any]:
        if self.tokens >= self.max_tokens:
            raise Stopped("budget_exhausted", f"the debate's token budget ({self.max_tokens}) is spent")
        messages = [
            {"role": "system", "content": system_prompt(p, self.debate["topic"])},
            {"role": "user", "content": prompt},
        ]
        if p["kind"] == "external":
            rec = await self._contributed(idx, p, round_, messages)
        else:
            rec = await self._generated(idx, p, round_, messages)
        self.done.append(rec)
        await self._publish(rec)
        self.tokens += rec["prompt_tokens"] + rec["completion_tokens"]
        self.cost_usd += rec["cost_usd"]
        totals = {
            "turns": idx + 1,
            "tokens": self.tokens,
            "cost_usd": round(self.cost_usd, 9),
            "updated_at": now(),
        }
        still = await self.debates.update_one(
            {"_id": self.debate["_id"], "status": "running"}, {"$set": totals}
        )
        await self.job.progress(
            idx + 1,
            self.planned,
            f"round {round_}: {p['name']}",
            partial={"turns": idx + 1, "tokens": self.tokens},
        )
        if still.matched_count == 0:
            raise Stopped("cancelled", "cancelled")
        return rec

    async def _generated(
        self, idx: int, p: dict[str, Any], round_: int, messages: list[dict[str, str]]
    ) -> dict[str, Any]:
        args = {
            "messages": messages,
            "model": p["model"],
            "max_tokens": self.settings.turn_max_tokens,
            "cache": False,
        }
        answer = (await self.job.call_tool("llm", "chat", args, on_progress=None))["structuredContent"]
        usage = answer.get("usage") or {}
        rec = turn_record(
            self.debate, idx, p, round_,
            model=str(answer.get("model") or p["model"]),
            served_by=answer.get("served_by"),
            content=str(answer.get("content") or ""),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            cost_usd=float(usage.get("cost_usd") or 0.0),
        )  # fmt: skip
        await self.turns.insert_one(rec)
        return rec

    async def _contributed(
        self, idx: int, p: dict[str, Any], round_: int, messages: list[dict[str, str]]
    ) -> dict[str, Any]:
        """An external seat's turn: wait for its org's `contribute` (external.py); past
        `DEBATE_EXTERNAL_WAIT_S` the turn is recorded as not given."""
        key = {"_id": self.debate["_id"], "status": "running"}
        awaiting = {"idx": idx, "pid": p["id"], "round": round_, "messages": messages, "since": now()}
        await self.debates.update_one(key, {"$set": {"awaiting": awaiting}})
        deadline = asyncio.get_running_loop().time() + self.settings.external_wait_s
        rec_id = f"{self.debate['_id']}:{idx:05d}"
        while (rec := await self.turns.find_one({"_id": rec_id})) is None:
            if await self.debates.count_documents(key) == 0:
                raise Stopped("cancelled", "cancelled")
            if asyncio.get_running_loop().time() > deadline:
                missed = turn_record(self.debate, idx, p, round_, model="none", served_by=None, content="(no contribution)",
                                      prompt_tokens=0, completion_tokens=0, cost_usd=0.0)  # fmt: skip
                try:
                    await self.turns.insert_one(missed)
                except DuplicateKeyError:
                    continue  # contributed just now
                rec = missed
                break
            await asyncio.sleep(self.settings.external_poll_s)
        await self.debates.update_one({"_id": self.debate["_id"]}, {"$unset": {"awaiting": ""}})
        return rec  # type: ignore[no-any-return]

    async def _publish(self, rec: dict[str, Any]) -> None:
        entry = {"role": "assistant", "name": entry_name(rec), "content": rec["content"] or "(no answer)"}
        await self.job.call_tool(
            "context", "append", {"ctx_id": self.debate["ctx_id"], "entries": [entry]}, on_progress=None
        )
