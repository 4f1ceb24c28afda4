"""The debate service's configuration: environment variables, one typed object (see README)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mcpmesh.service.envsettings import settings_from_env

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
    #: How often a running debate writes its totals (turns, tokens, cost) and its job's progress;
    #: 0 = after every turn. Each is a store write; the last planned turn always writes them.
    progress_interval_s: float = 1.0
    #: How often each replica recomputes the anonymized cross-org aggregates; 0 = never.
    compare_interval_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.turn_max_tokens < 1 or self.quote_chars < 1:
            raise ValueError("DEBATE_TURN_MAX_TOKENS and DEBATE_QUOTE_CHARS must be positive")
        if self.compare_interval_s < 0 or self.progress_interval_s < 0:
            raise ValueError("DEBATE_COMPARE_INTERVAL_S and DEBATE_PROGRESS_INTERVAL_S must not be negative")
        if self.external_wait_s <= 0 or self.external_poll_s <= 0:
            raise ValueError("DEBATE_EXTERNAL_WAIT_S and DEBATE_EXTERNAL_POLL_S must be positive")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DebateSettings:
        return settings_from_env(cls, _PREFIX, environ)
