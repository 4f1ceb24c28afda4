"""Running a debate turn by turn, as a durable job, exactly once per turn.

A turn is: the participant's chat through mcp-llm (as the debate's org, on the job's ticket),
its record in the org's `turns` collection (`_id = <debate>:<idx>`: the commit point and the
checkpoint) and, alongside, one read of the debate (a `cancel` stops it before the next turn). What
follows from the records is batched, every `DEBATE_PROGRESS_INTERVAL_S`, and written alongside
the next turn's chat: the new turns' entries in the transcript context in mcp-context (one
append), the debate's totals, the job's progress. A resumed run loads the turn records and
replays them to the protocol without calling the model; records not yet in the transcript (the
run stopped before their batch landed) are appended first — the transcript's last entry names
the last turn it holds, so nothing is appended twice.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from pymongo.errors import DuplicateKeyError

from mcpmesh.debate.participants import system_prompt
from mcpmesh.debate.settings import DebateSettings
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.service import JobContext
from mcpmesh.store import Collection

T = TypeVar("T")
_NAME_BAD = re.compile(r"[^A-Za-z0-9_.:-]")
#: Content bytes one transcript append carries at most (a request stays well under NATS's 1 MiB).
_APPEND_BYTES = 256 * 1024


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
    reported: float = 0.0  # when the totals and progress were last written (monotonic clock)
    #: Records of the turns taken since the last report, not in the transcript yet (`reports`).
    unreported: list[dict[str, Any]] = field(default_factory=list)

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
            await runner._publish(done[last + 1 :])
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
            rec = await self._meanwhile(self._contributed(idx, p, round_, messages))  # stored
            running = await self._running()
        else:
            answer = await self._meanwhile(self._chat(p, messages))
            rec = self._generated(idx, p, round_, answer)
            # What a turn waits for: its record (the commit point), and one read alongside: a
            # `cancel` stops the debate before the next turn is asked for.
            _, running = await asyncio.gather(self.turns.insert_one(rec), self._running())
        self.done.append(rec)
        self.unreported.append(rec)
        self.tokens += rec["prompt_tokens"] + rec["completion_tokens"]
        self.cost_usd += rec["cost_usd"]
        if not running:
            raise Stopped("cancelled", "cancelled")
        return rec

    async def _running(self) -> bool:
        return (
            await self.debates.find_one({"_id": self.debate["_id"], "status": "running"}, {"_id": 1})
            is not None
        )

    async def _meanwhile(self, work: Awaitable[T]) -> T:
        """`work` (the next turn), while what is due is reported (`reports`)."""
        reporting = asyncio.gather(*self.reports())
        try:
            result = await work
        except asyncio.CancelledError:
            reporting.cancel()  # stopped: a resumed run appends what did not land
            raise
        except Exception:
            await asyncio.gather(reporting, return_exceptions=True)
            raise
        await reporting
        return result

    def reports(self, final: bool = False) -> list[Awaitable[Any]]:
        """The writes due (started by the caller), with the figures of the turns recorded so far:
        every `DEBATE_PROGRESS_INTERVAL_S`, the transcript entries of the turns taken since the
        last report (one append), the debate's totals and the job's progress; `final`: the
        entries and the progress (the outcome carries the totals). Each is a store write or
        more, so they are batched rather than written per turn; the turn records stay the truth
        — a resumed run appends what the transcript lacks (`open`)."""
        if not self.unreported or (
            not final and time.monotonic() - self.reported < self.settings.progress_interval_s
        ):
            return []
        recs, self.unreported = self.unreported, []
        self.reported = time.monotonic()
        turns = recs[-1]["idx"] + 1
        message = f"round {recs[-1]['round']}: {recs[-1]['name']}"
        partial = {"turns": turns, "tokens": self.tokens}
        writes: list[Awaitable[Any]] = [
            self._publish(recs),
            self.job.progress(turns, self.planned, message, partial=partial),
        ]
        if not final:
            totals = {
                "turns": turns,
                "tokens": self.tokens,
                "cost_usd": round(self.cost_usd, 9),
                "updated_at": now(),
            }
            key = {"_id": self.debate["_id"], "status": "running"}
            writes.append(self.debates.update_one(key, {"$set": totals}))
        return writes

    async def flush(self) -> None:
        """The transcript entries not appended yet (the run ends: its outcome has the totals)."""
        await asyncio.gather(*self.reports(final=True))

    async def _chat(self, p: dict[str, Any], messages: list[dict[str, str]]) -> dict[str, Any]:
        args = {
            "messages": messages,
            "model": p["model"],
            "max_tokens": self.settings.turn_max_tokens,
            "cache": False,
        }
        answer = await self.job.call_tool("llm", "chat", args, on_progress=None)
        return answer["structuredContent"]  # type: ignore[no-any-return]

    def _generated(self, idx: int, p: dict[str, Any], round_: int, answer: dict[str, Any]) -> dict[str, Any]:
        usage = answer.get("usage") or {}
        return turn_record(
            self.debate, idx, p, round_,
            model=str(answer.get("model") or p["model"]),
            served_by=answer.get("served_by"),
            content=str(answer.get("content") or ""),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            cost_usd=float(usage.get("cost_usd") or 0.0),
        )  # fmt: skip

    async def _contributed(
        self, idx: int, p: dict[str, Any], round_: int, messages: list[dict[str, str]]
    ) -> dict[str, Any]:
        """An external seat's turn: wait for its org's `contribute` (external.py). The seat's
        invitation is read again at its turn and while waiting: a seat revoked by the owner or
        declined by its org since the start is skipped (no waiting for a seat that can no
        longer answer); past `DEBATE_EXTERNAL_WAIT_S` the turn is recorded as not given."""
        key = {"_id": self.debate["_id"], "status": "running"}
        deadline = asyncio.get_running_loop().time() + self.settings.external_wait_s
        rec_id = f"{self.debate['_id']}:{idx:05d}"
        asked = False
        while (rec := await self.turns.find_one({"_id": rec_id})) is None:
            gone = await self._seat_gone(p)
            if gone is not None or asyncio.get_running_loop().time() > deadline:
                why = f"(no contribution: the seat's invitation was {gone})" if gone else "(no contribution)"
                if (rec := await self._missed(idx, p, round_, why)) is not None:
                    break
                continue  # contributed just now: the next look finds it
            if not asked:  # what the seat answers (joined_get shows it)
                asked = True
                wanted = {"idx": idx, "pid": p["id"], "round": round_, "messages": messages, "since": now()}
                await self.debates.update_one(key, {"$set": {"awaiting": wanted}})
            if await self.debates.count_documents(key) == 0:
                raise Stopped("cancelled", "cancelled")
            await asyncio.sleep(self.settings.external_poll_s)
        if asked:
            await self.debates.update_one({"_id": self.debate["_id"]}, {"$unset": {"awaiting": ""}})
        return rec  # type: ignore[no-any-return]

    async def _seat_gone(self, p: dict[str, Any]) -> str | None:
        """`revoked` / `declined` when the seat's invitation is no longer accepted, else None."""
        invites = await self.job.store.collection("invites")
        invite = await invites.find_one({"debate_id": self.debate["_id"], "pid": p["id"]}, {"status": 1})
        status = "revoked" if invite is None else str(invite["status"])
        return None if status == "accepted" else status

    async def _missed(self, idx: int, p: dict[str, Any], round_: int, content: str) -> dict[str, Any] | None:
        """Record the seat's turn as not given (None: its contribution landed just now)."""
        missed = turn_record(self.debate, idx, p, round_, model="none", served_by=None, content=content,
                             prompt_tokens=0, completion_tokens=0, cost_usd=0.0)  # fmt: skip
        try:
            await self.turns.insert_one(missed)
        except DuplicateKeyError:
            return None
        return missed

    async def _publish(self, recs: list[dict[str, Any]]) -> None:
        """The turns' transcript entries, in order, in appends of at most `_APPEND_BYTES`."""
        batch: list[dict[str, str]] = []
        size = 0
        for rec in recs:
            entry = {"role": "assistant", "name": entry_name(rec), "content": rec["content"] or "(no answer)"}
            if batch and size + len(entry["content"].encode()) > _APPEND_BYTES:
                await self._append(batch)
                batch, size = [], 0
            batch.append(entry)
            size += len(entry["content"].encode())
        if batch:
            await self._append(batch)

    async def _append(self, entries: list[dict[str, str]]) -> None:
        await self.job.call_tool(
            "context", "append", {"ctx_id": self.debate["ctx_id"], "entries": entries}, on_progress=None
        )
