"""The dxp service's configuration: environment variables, one typed object (see README)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mcpmesh.service.envsettings import settings_from_env

_PREFIX = "DXP_"


@dataclass(frozen=True)
class DxpSettings:
    #: The Deployment API a project uses unless it names its own (`api_url` at register).
    api_url: str = "https://paasportal.episerver.net/api/v1.0/"
    #: Accept http:// API URLs (the local sandbox); the real API is https only.
    allow_http: bool = False
    #: Timeout of one API request.
    timeout_s: float = 30.0
    #: Retries of a request that may be resent (5xx, connection errors, 429) after the first try.
    retries: int = 3
    #: First backoff before a retry (doubles each time).
    backoff_s: float = 1.0
    #: Longest Retry-After waited for within a call; longer: `rate_limited` with the wait.
    max_retry_after_s: float = 30.0
    #: Client-side limits per project, shared by every replica (the reference server's).
    per_minute: int = 30
    per_hour: int = 500
    #: Seconds between two reads of a monitored deployment.
    monitor_poll_s: float = 15.0

    def __post_init__(self) -> None:
        for name in ("per_minute", "per_hour"):
            if getattr(self, name) < 1:
                raise ValueError(f"{_PREFIX}{name.upper()} must be positive")
        for name in ("timeout_s", "monitor_poll_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{_PREFIX}{name.upper()} must be positive")
        if self.retries < 0 or self.backoff_s < 0 or self.max_retry_after_s < 0:
            raise ValueError(f"{_PREFIX}RETRIES, BACKOFF_S and MAX_RETRY_AFTER_S must not be negative")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DxpSettings:
        return settings_from_env(cls, _PREFIX, environ)
