"""The protocols' pure parts: answers, votes and ties, stability, and a debate's checked spec."""

from __future__ import annotations

import pytest

from mcpmesh.debate.debates import spec_of
from mcpmesh.debate.engine import entry_name, turn_of
from mcpmesh.debate.limits import limits_for
from mcpmesh.debate.protocols import PROTOCOLS, final_answer, vote
from mcpmesh.proto.errors import ErrorCode, MeshException


def test_the_last_answer_line_is_the_answer() -> None:
    assert final_answer("I think\nANSWER: 41\nno wait\nAnswer:  42. ") == "42"
    assert final_answer("  Just  Yes. ") == "just yes"


def test_a_majority_wins_and_a_tie_has_no_answer() -> None:
    won = vote([{"a": "1", "b": "2", "c": "2"}])
    assert (won["answer"], won["consensus"], won["agreement"]) == ("2", False, 0.667)
    tie = vote([{"a": "1", "b": "2"}])
    assert tie["answer"] is None and tie["tie"] == ["1", "2"] and tie["agreement"] == 0.5


def test_the_stable_round_is_where_answers_stopped_changing() -> None:
    rounds = [{"a": "1", "b": "2"}, {"a": "2", "b": "2"}, {"a": "2", "b": "2"}, {"a": "2", "b": "2"}]
    assert vote(rounds)["stable_round"] == 2
    assert vote(rounds[:1])["stable_round"] == 1


def test_entry_names_carry_the_turn() -> None:
    rec = {"idx": 12, "pid": "p3", "round": 2, "model": "sysa/gpt-4o mini"}
    assert entry_name(rec) == "t12.p3.r2.sysa:gpt-4o:mini"
    assert turn_of(entry_name(rec)) == 12 and turn_of(None) == -1 and turn_of("x") == -1


def test_a_spec_is_checked_against_the_protocol_and_the_tier() -> None:
    two = [{"name": "A"}, {"name": "B"}]
    spec = spec_of({"protocol": "mad", "participants": two, "rounds": 3}, limits_for("free"))
    assert spec["judge"]["kind"] == "system" and spec["judge"]["id"] == "p3"
    assert PROTOCOLS["mad"].planned_turns(spec) == 9
    with pytest.raises(MeshException) as too_many:
        spec_of({"participants": [*two, {"name": "C"}, {"name": "D"}]}, limits_for("free"))
    assert too_many.value.error.code is ErrorCode.LIMIT_EXCEEDED
    for bad in (
        {"participants": [{"name": "A", "colour": "red"}, *two]},
        {"participants": [{"system": "king"}, *two]},
    ):
        with pytest.raises(MeshException) as refused:
            spec_of(bad, limits_for("pro"))
        assert refused.value.error.code is ErrorCode.INVALID_REQUEST
