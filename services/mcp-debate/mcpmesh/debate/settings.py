"""The debate service's configuration: environment variables, one typed object (see README)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

_PREFIX = "DEBATE_"


@dataclass(frozen=True)
class DebateSettings:
    #: `max_tokens` asked of the model for one turn.
    turn_max_tokens: int = 512
    #: Characters of another participant's answer quoted in a prompt (longer ones are cut).
    quote_chars: int = 2000
    #: Namespace of the transcript contexts in mcp-context.
    namespace: str = "debates"
    #: How long a running debate waits for an external seat's turn before recording it as not given.
    external_wait_s: float = 3600.0
    #: How often a waiting debate looks for the external seat's turn.
    external_poll_s: float = 1.0
    #: How often each replica recomputes the anonymized cross-org aggregates; 0 = never.
    compare_interval_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.turn_max_tokens < 1 or self.quote_chars < 1:
            raise ValueError("DEBATE_TURN_MAX_TOKENS and DEBATE_QUOTE_CHARS must be positive")
        if self.compare_interval_s < 0:
            raise ValueError("DEBATE_COMPARE_INTERVAL_S must not be negative")
        if self.external_wait_s <= 0 or self.external_poll_s <= 0:
            raise ValueError("DEBATE_EXTERNAL_WAIT_S and DEBATE_EXTERNAL_POLL_S must be positive")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DebateSettings:
        env = os.environ if environ is None else environ

        def get(name: str, default: float) -> float:
            raw = env.get(_PREFIX + name, "").strip()
            try:
                return float(raw) if raw else default
            except ValueError:
                raise ValueError(f"{_PREFIX}{name}={raw!r} is not a number") from None

        return cls(
            turn_max_tokens=int(get("TURN_MAX_TOKENS", cls.turn_max_tokens)),
            quote_chars=int(get("QUOTE_CHARS", cls.quote_chars)),
            external_wait_s=get("EXTERNAL_WAIT_S", cls.external_wait_s),
            external_poll_s=get("EXTERNAL_POLL_S", cls.external_poll_s),
            compare_interval_s=get("COMPARE_INTERVAL_S", cls.compare_interval_s),
            namespace=env.get(_PREFIX + "NAMESPACE", "").strip() or cls.namespace,
        )
