"""The leasing limiter on a real nats-server: shared counters, windows, refunds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from mcpmesh.bus import Bus, connect
from mcpmesh.gateway.errors import GatewayError
from mcpmesh.gateway.limits import Limiter, window_of
from mcpmesh.proto.tiers import OrgSettings, RateLimits, tier_defaults


def settings(per_minute: int, per_day: int = 1_000_000, monthly: int = 1_000_000) -> OrgSettings:
    base = tier_defaults("pro")
    return OrgSettings(
        max_contexts=base.max_contexts,
        max_tokens_per_context=base.max_tokens_per_context,
        allowed_models=base.allowed_models,
        rate_limits=RateLimits(requests_per_minute=per_minute, requests_per_day=per_day),
        monthly_tool_calls=monthly,
    )


def test_windows_are_utc_and_end_where_the_next_begins() -> None:
    t = datetime(2026, 2, 28, 23, 59, 30, tzinfo=UTC).timestamp()
    _minute, minute_end = window_of("minute", t)
    assert minute_end - t == 30
    day, day_end = window_of("day", t)
    assert day == "20260228" and day_end == datetime(2026, 3, 1, tzinfo=UTC).timestamp()
    month, month_end = window_of("month", t)
    assert month == "202602" and month_end == datetime(2026, 3, 1, tzinfo=UTC).timestamp()
    assert (
        window_of("month", datetime(2026, 12, 31, 12, tzinfo=UTC).timestamp())[1]
        == datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    )


@pytest.fixture
async def buses(private_nats: object) -> AsyncIterator[list[Bus]]:
    url = private_nats.url_for("gateway")  # type: ignore[attr-defined]
    opened = [await connect(url, name=f"limits-{i}") for i in range(2)]
    yield opened
    for bus in opened:
        await bus.close()


async def test_two_limiters_share_one_limit(buses: list[Bus]) -> None:
    limiters = [Limiter(bus) for bus in buses]
    for limiter in limiters:
        await limiter.start()
    org = settings(per_minute=400)
    admitted = 0

    async def one(i: int) -> None:
        nonlocal admitted
        try:
            await limiters[i % 2].admit("org-acme", "key-aaaaaaaaaaaa", org, tool_call=False)
            admitted += 1
        except GatewayError as exc:
            assert exc.status == 429

    for start in range(0, 1000, 50):
        await asyncio.gather(*(one(i) for i in range(start, start + 50)))
    assert 360 <= admitted <= 400
    # Leasing: far fewer KV writes than requests.
    assert sum(limiter.kv_updates for limiter in limiters) < 200


async def test_a_refused_request_spends_nothing(buses: list[Bus]) -> None:
    limiter = Limiter(buses[0])
    await limiter.start()
    tight = settings(per_minute=1000, monthly=1)
    await limiter.admit("org-beta", "key-bbbbbbbbbbbb", tight, tool_call=True)
    with pytest.raises(GatewayError) as info:
        await limiter.admit("org-beta", "key-bbbbbbbbbbbb", tight, tool_call=True)
    assert info.value.extra["limit"] == "org.monthly_tool_calls"
    # The refused tool call did not spend request units: the remaining 998 are all there.
    for _ in range(998):
        await limiter.admit("org-beta", "key-bbbbbbbbbbbb", tight, tool_call=False)


async def test_zero_refuses_everything_and_the_quota_seeds_from_usage(buses: list[Bus]) -> None:
    async def seed(org_id: str) -> int:
        return 9 if org_id == "org-gamma" else 0

    limiter = Limiter(buses[0], quota_seed=seed)
    await limiter.start()
    with pytest.raises(GatewayError):
        await limiter.admit("org-delta", "key-dddddddddddd", settings(per_minute=0), tool_call=False)
    await limiter.admit("org-gamma", "key-cccccccccccc", settings(per_minute=100, monthly=10), tool_call=True)
    with pytest.raises(GatewayError) as info:
        await limiter.admit(
            "org-gamma", "key-cccccccccccc", settings(per_minute=100, monthly=10), tool_call=True
        )
    assert info.value.status == 429 and int(info.value.headers["Retry-After"]) > 0
