"""Debate protocols, each a small strategy: `check` the debate's shape when it is created,
`planned_turns` for progress, and `run` it turn by turn through a `Turns` (the engine), returning
the outcome. A new protocol is one subclass registered in `PROTOCOLS`.

Every protocol is deterministic given the turns' texts, so a resumed run replays the turns
already taken (from the store, without calling the model) and continues where it stopped.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, ClassVar, Final
from typing import Protocol as TypingProtocol

from mcpmesh.debate.participants import invalid


class Turns(TypingProtocol):
    """What a protocol runs on (`engine.Runner`)."""

    @property
    def quote_chars(self) -> int: ...

    async def turn(self, participant: dict[str, Any], round_: int, prompt: str) -> str: ...

    def history(self) -> list[tuple[dict[str, Any], int, str]]: ...


Debate = dict[str, Any]
_ANSWER_RE: Final = re.compile(r"^\s*ANSWER\s*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
_DECISION_RE: Final = re.compile(r"^\s*DECISION\s*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
_REASONS_RE: Final = re.compile(r"^\s*REASONS\s*:\s*(.+)", re.IGNORECASE | re.MULTILINE | re.DOTALL)


def final_answer(text: str) -> str:
    """The answer a turn ends with (its last `ANSWER:` line, else the whole text), normalized."""
    found = _ANSWER_RE.findall(text)
    answer = found[-1] if found else text
    return " ".join(answer.split()).strip(" .").lower()


def quote(turns: Turns, text: str) -> str:
    return text if len(text) <= turns.quote_chars else text[: turns.quote_chars] + " [...]"


def discussion(turns: Turns) -> str:
    lines = [f"{p['name']} ({p['role']}, round {r}): {quote(turns, text)}" for p, r, text in turns.history()]
    return "\n\n".join(lines) if lines else "(nothing said yet)"


class Protocol:
    name: ClassVar[str]
    description: ClassVar[str]

    def check(self, debate: Debate) -> None:
        """Raise `invalid_request` if the debate's participants don't fit the protocol."""

    def planned_turns(self, debate: Debate) -> int:
        raise NotImplementedError

    async def run(self, debate: Debate, turns: Turns) -> dict[str, Any]:
        raise NotImplementedError


class Society(Protocol):
    """Society of minds (Du et al., 2023): every agent answers alone, then for each further round
    sees the other agents' answers of the round before and revises; the majority answer wins."""

    name = "society"
    description = "N agents answer independently, then revise after seeing the others' answers; majority vote"

    def check(self, debate: Debate) -> None:
        if len(debate["participants"]) < 2:
            raise invalid("society needs at least 2 participants")

    def planned_turns(self, debate: Debate) -> int:
        return len(debate["participants"]) * debate["rounds"]

    async def run(self, debate: Debate, turns: Turns) -> dict[str, Any]:
        agents = debate["participants"]
        end = "End with one line 'ANSWER: <your short final answer>'."
        previous: dict[str, str] = {}
        answers_by_round: list[dict[str, str]] = []
        for r in range(1, debate["rounds"] + 1):
            now: dict[str, str] = {}
            for p in agents:
                if r == 1:
                    prompt = f"Answer the question. {end}"
                else:
                    others = "\n\n".join(
                        f"{o['name']}: {quote(turns, previous[o['id']])}"
                        for o in agents
                        if o["id"] != p["id"]
                    )
                    prompt = (
                        f"The other agents answered in the previous round:\n\n{others}\n\n"
                        f"Using their answers as additional advice, give your updated answer. {end}"
                    )
                now[p["id"]] = await turns.turn(p, r, prompt)
            previous = now
            answers_by_round.append({pid: final_answer(text) for pid, text in now.items()})
        return vote(answers_by_round)


def vote(rounds: list[dict[str, str]]) -> dict[str, Any]:
    """Majority of the last round's answers (a tie has no answer), agreement, and the round from
    which no agent's answer changed any more."""
    final = rounds[-1]
    counts = Counter(final.values()).most_common()
    top = [a for a, n in counts if n == counts[0][1]]
    stable = len(rounds)
    while stable > 1 and rounds[stable - 2] == final:
        stable -= 1
    return {
        "answer": top[0] if len(top) == 1 else None,
        "tie": sorted(top) if len(top) > 1 else [],
        "votes": dict(counts),
        "consensus": len(counts) == 1,
        "agreement": round(counts[0][1] / len(final), 3),
        "stable_round": stable,
        "answers": final,
    }


class Mad(Protocol):
    """Multi-agent debate (Liang et al.): an affirmative and a negative side argue; after each
    round the judge may decide (ending it early); after the last it must."""

    name = "mad"
    description = (
        "affirmative vs negative for R rounds; the judge may stop early and gives the answer with reasons"
    )

    def check(self, debate: Debate) -> None:
        if len(debate["participants"]) != 2 or debate.get("judge") is None:
            raise invalid("mad needs exactly 2 participants (affirmative, negative) and a judge")

    def planned_turns(self, debate: Debate) -> int:
        return 3 * debate["rounds"]

    async def run(self, debate: Debate, turns: Turns) -> dict[str, Any]:
        (aff, neg), judge, rounds = debate["participants"], debate["judge"], debate["rounds"]
        for r in range(1, rounds + 1):
            for side, p in (("affirmative", aff), ("negative", neg)):
                await turns.turn(
                    p, r, f"Debate so far:\n\n{discussion(turns)}\n\nArgue the {side} side for round {r}."
                )
            last = r == rounds
            ask = (
                "Give your final decision now: a line 'DECISION: <answer>' then 'REASONS: <why>'."
                if last
                else "If you can decide now, answer with a line 'DECISION: <answer>' then 'REASONS: <why>'; "
                "otherwise answer 'CONTINUE'."
            )
            verdict = await turns.turn(judge, r, f"Debate so far:\n\n{discussion(turns)}\n\n{ask}")
            decision = _DECISION_RE.search(verdict)
            if decision or last:
                reasons = _REASONS_RE.search(verdict)
                return {
                    "answer": decision.group(1) if decision else None,
                    "reasons": reasons.group(1).strip() if reasons else verdict.strip(),
                    "decided_round": r,
                    "early_stop": not last,
                    "stable_round": r,
                }
        raise AssertionError("unreachable: the last round always decides")


class Panel(Protocol):
    """A panel (ChatEval-like): personas speak one by one each round, seeing the discussion so far
    (`simultaneous`: only the rounds before); an optional summarizer closes each round, and its
    last summary is the answer."""

    name = "panel"
    description = "personas speak in turn each round; an optional summarizer sums up each round"

    def check(self, debate: Debate) -> None:
        if not debate["participants"]:
            raise invalid("panel needs at least 1 participant")

    def planned_turns(self, debate: Debate) -> int:
        per_round = len(debate["participants"]) + (1 if debate.get("summarizer") else 0)
        return per_round * debate["rounds"]

    async def run(self, debate: Debate, turns: Turns) -> dict[str, Any]:
        summary: str | None = None
        statements: dict[str, str] = {}
        for r in range(1, debate["rounds"] + 1):
            before = discussion(turns)  # simultaneous: nobody sees this round's other statements
            for p in debate["participants"]:
                seen = before if debate.get("simultaneous") else discussion(turns)
                statements[p["name"]] = await turns.turn(
                    p, r, f"Discussion so far:\n\n{seen}\n\nGive your view for round {r}."
                )
            if debate.get("summarizer"):
                summary = await turns.turn(
                    debate["summarizer"],
                    r,
                    f"Discussion so far:\n\n{discussion(turns)}\n\nSummarize round {r}.",
                )
        return {"answer": summary, "statements": statements, "stable_round": debate["rounds"]}


PROTOCOLS: Final[dict[str, Protocol]] = {p.name: p for p in (Society(), Mad(), Panel())}


def protocol(name: str) -> Protocol:
    found = PROTOCOLS.get(name)
    if found is None:
        raise invalid(f"unknown protocol {name!r}: use one of {sorted(PROTOCOLS)}")
    return found
