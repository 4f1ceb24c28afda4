"""Per-tier bounds on one debate: rounds, participants (judge and summarizer included) and the
tokens its turns may spend together."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class DebateLimits:
    max_rounds: int
    max_participants: int
    max_tokens: int


TIER_LIMITS: Final[dict[str, DebateLimits]] = {
    "free": DebateLimits(max_rounds=3, max_participants=3, max_tokens=20_000),
    "pro": DebateLimits(max_rounds=10, max_participants=8, max_tokens=200_000),
    "enterprise": DebateLimits(max_rounds=20, max_participants=16, max_tokens=2_000_000),
}


def limits_for(tier: str) -> DebateLimits:
    return TIER_LIMITS.get(tier, TIER_LIMITS["free"])
