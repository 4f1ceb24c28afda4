"""chat through the real bus against scripted OpenAI-compatible fakes: who served, fallbacks,
errors on the mesh's model, usage figures."""

from __future__ import annotations

from mcpmesh.proto.errors import ErrorCode
from mcpmesh.service.testing import internals_in

from .conftest import SYSTEM_KEY, Llm, org

HI = [{"role": "user", "content": "hi there"}]


async def test_default_alias_is_served_by_the_first_system_provider_with_its_key(llm: Llm) -> None:
    answer = await llm.call(org(), "chat", {"messages": HI})
    assert answer["content"] == "hello from the fake"
    assert (answer["provider"], answer["model"], answer["served_by"]) == ("sysa", "big", "sysa/big")
    assert answer["requested"] == "default"
    assert answer["fallbacks_tried"] == []
    [seen] = llm.fake.requests
    assert seen.body["model"] == "big-upstream"
    assert seen.authorization == f"Bearer {SYSTEM_KEY}"
    assert answer["usage"]["prompt_tokens"] == 11 and answer["usage"]["completion_tokens"] == 7
    assert answer["usage"]["cost_usd"] == round(11 * 1e-6 + 7 * 2e-6, 9)
    assert answer["usage"]["billed_to"] == "system"


async def test_a_429_falls_back_to_the_next_provider_of_the_model_and_says_so(llm: Llm) -> None:
    llm.fake.script("429")
    answer = await llm.call(org(), "chat", {"messages": HI})
    assert answer["served_by"] == "sysb/big"
    assert answer["content"] == "second provider here"
    assert answer["fallbacks_tried"] == [{"provider": "sysa", "model": "big", "status": "429"}]


async def test_500s_then_the_same_class_serves(llm: Llm) -> None:
    llm.fake.script("500")
    llm.fake2.script("503")
    answer = await llm.call(org(), "chat", {"messages": HI})
    # big on sysa (500), big on sysb (503), then big2 (class "large") on sysb
    assert answer["served_by"] == "sysb/big2"
    assert [(t["provider"], t["model"]) for t in answer["fallbacks_tried"]] == [
        ("sysa", "big"),
        ("sysb", "big"),
    ]


async def test_a_slow_provider_times_out_and_falls_back(llm: Llm) -> None:
    llm.fake.script("slow")
    answer = await llm.call(org(), "chat", {"messages": HI})
    assert answer["served_by"] == "sysb/big"
    assert len(answer["fallbacks_tried"]) == 1


async def test_every_provider_down_is_unavailable_and_retryable_without_internals(llm: Llm) -> None:
    llm.fake.script("500", "500")
    llm.fake2.script("500", "500", "500")
    failure = await llm.fails(org(), "chat", {"messages": HI})
    assert failure.error is not None
    assert failure.error.code == ErrorCode.UNAVAILABLE
    assert failure.error.retryable is True
    assert "scripted" not in failure.text and SYSTEM_KEY not in failure.text
    assert internals_in(failure.text) == []
    assert failure.error.details["tried"] == ["sysa/big", "sysb/big", "sysb/big2"]


async def test_rate_limited_everywhere_is_rate_limited(llm: Llm) -> None:
    llm.fake.script("429")
    llm.fake2.script("429", "429")
    failure = await llm.fails(org(), "chat", {"messages": HI})
    assert failure.error is not None and failure.error.code == ErrorCode.RATE_LIMITED
    assert failure.error.retryable is True


async def test_context_window_exceeded_is_invalid_request(llm: Llm) -> None:
    llm.fake.script("context")
    llm.fake2.script("context", "context")  # every provider of the class refuses it
    failure = await llm.fails(org(), "chat", {"messages": HI, "model": "sysa/big"})
    assert failure.error is not None and failure.error.code == ErrorCode.INVALID_REQUEST
    assert "context window" in failure.text


async def test_offline_provider_answers_deterministically(llm: Llm) -> None:
    answer = await llm.call(org(), "chat", {"messages": HI, "model": "cheap"})
    assert answer["content"] == "[offline mock] hi there"
    assert answer["served_by"] == "mock/echo"
    assert answer["usage"]["cost_usd"] == 0
