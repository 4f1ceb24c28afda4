"""Org settings and their defaults per tier. The gateway owns them; services read them
from the NATS KV bucket `ORG_SETTINGS` (key = org id), falling back to the tier default."""

from __future__ import annotations

from typing import Final

import msgspec

ORG_SETTINGS_BUCKET: Final = "ORG_SETTINGS"


class RateLimits(msgspec.Struct, frozen=True, kw_only=True):
    requests_per_minute: int
    requests_per_day: int


class OrgSettings(msgspec.Struct, frozen=True, kw_only=True):
    max_contexts: int
    max_tokens_per_context: int
    allowed_models: list[str]
    rate_limits: RateLimits
    monthly_tool_calls: int
    #: Monthly LLM budgets (mcp-llm): tokens on any key, and US dollars the mesh bills; None = no cap.
    monthly_llm_tokens: int | None = None
    monthly_llm_cost_usd: float | None = None


TIERS: Final[dict[str, OrgSettings]] = {
    "free": OrgSettings(
        max_contexts=100,
        max_tokens_per_context=20_000,
        allowed_models=["mock/*"],
        rate_limits=RateLimits(requests_per_minute=60, requests_per_day=2_000),
        monthly_tool_calls=10_000,
    ),
    "pro": OrgSettings(
        max_contexts=1_000,
        max_tokens_per_context=100_000,
        allowed_models=["*"],
        rate_limits=RateLimits(requests_per_minute=600, requests_per_day=50_000),
        monthly_tool_calls=500_000,
    ),
    "enterprise": OrgSettings(
        max_contexts=100_000,
        max_tokens_per_context=1_000_000,
        allowed_models=["*"],
        rate_limits=RateLimits(requests_per_minute=6_000, requests_per_day=1_000_000),
        monthly_tool_calls=10_000_000,
    ),
}


def tier_defaults(tier: str) -> OrgSettings:
    return TIERS.get(tier, TIERS["free"])
