"""The context service's configuration: environment variables, one typed object (see README)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mcpmesh.proto.ids import SYSTEM_ORG, validate_org_id
from mcpmesh.service.envsettings import settings_from_env


@dataclass(frozen=True)
class ContextSettings:
    #: Contexts untouched (no get/append/update) for this long move to the cold collections.
    cold_after_s: float = 7 * 24 * 3600.0
    #: How often the background sweep runs (tiering, crash repair, expired shares); 0 = never.
    sweep_interval_s: float = 300.0
    #: Entries whose content is larger than this (UTF-8 bytes) are stored zlib-compressed.
    compress_above_bytes: int = 2048
    #: Hard cap on one entry's content (UTF-8 bytes). Keep it well under the NATS max payload.
    max_entry_bytes: int = 128 * 1024
    #: Entries one append call may carry.
    max_entries_per_append: int = 500
    #: Entries one context may hold (tokens are capped by the tier's max_tokens_per_context).
    max_entries_per_context: int = 100_000
    #: Budget for the entries of one get reply, as estimated wire bytes (entries.reply_cost):
    #: a NATS message is 1 MiB by default.
    max_reply_bytes: int = 900_000
    #: tiktoken encoding used to count tokens offline (cl100k_base, o200k_base), or "approx".
    token_encoding: str = "cl100k_base"
    #: The reserved org whose store holds the global `system/...` namespaces.
    system_org: str = SYSTEM_ORG
    #: A move between tiers or a delete whose lock is older than this is taken over and finished.
    lock_lease_s: float = 60.0
    #: An append reservation older than this is repaired (committed if complete, else removed).
    pending_stale_s: float = 120.0
    #: Upper bound on writing one append's entries; past it the append rolls back.
    write_timeout_s: float = 20.0
    #: How long a call waits for a context that is being moved or deleted before giving up.
    busy_wait_s: float = 5.0

    def __post_init__(self) -> None:
        validate_org_id(self.system_org)
        if self.cold_after_s < 1:
            raise ValueError("CONTEXT_COLD_AFTER_S must be at least 1 second")
        if self.pending_stale_s <= self.write_timeout_s:
            raise ValueError("CONTEXT_PENDING_STALE_S must be larger than CONTEXT_WRITE_TIMEOUT_S")
        for name in (
            "max_entry_bytes",
            "max_entries_per_append",
            "max_entries_per_context",
            "max_reply_bytes",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{_ENV_PREFIX}{name.upper()} must be positive")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ContextSettings:
        return settings_from_env(cls, _ENV_PREFIX, environ)


_ENV_PREFIX = "CONTEXT_"
