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

    def __post_init__(self) -> None:
        if self.turn_max_tokens < 1 or self.quote_chars < 1:
            raise ValueError("DEBATE_TURN_MAX_TOKENS and DEBATE_QUOTE_CHARS must be positive")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DebateSettings:
        env = os.environ if environ is None else environ

        def get(name: str, default: int) -> int:
            raw = env.get(_PREFIX + name, "").strip()
            try:
                return int(raw) if raw else default
            except ValueError:
                raise ValueError(f"{_PREFIX}{name}={raw!r} is not an integer") from None

        return cls(
            turn_max_tokens=get("TURN_MAX_TOKENS", cls.turn_max_tokens),
            quote_chars=get("QUOTE_CHARS", cls.quote_chars),
            namespace=env.get(_PREFIX + "NAMESPACE", "").strip() or cls.namespace,
        )
