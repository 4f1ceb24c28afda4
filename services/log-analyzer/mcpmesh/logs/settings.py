"""The log-analyzer's configuration: environment variables, one typed object (see README)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mcpmesh.logs.analysis import Limits
from mcpmesh.service.envsettings import settings_from_env

_PREFIX = "LOGS_"


@dataclass(frozen=True)
class LogsSettings:
    #: Largest inline input (`analyze`): UTF-8 bytes of all lines. Keep under the NATS max payload.
    max_inline_bytes: int = 512 * 1024
    #: Most blobs one source analysis reads.
    max_blobs: int = 5000
    #: Timeout of one storage request (list, read of a chunk).
    read_timeout_s: float = 30.0
    #: Paths tracked per analysis (status by path, slowest paths): the top-k capacity.
    max_paths: int = 500
    #: Time series buckets kept per analysis (past it buckets widen: 1, 5, 15, 60... minutes).
    series_buckets: int = 1440
    #: Accept http:// SAS URLs (Azurite in development); production storage is https only.
    allow_http: bool = False

    def __post_init__(self) -> None:
        for name in ("max_inline_bytes", "max_blobs", "max_paths", "series_buckets"):
            if getattr(self, name) < 1:
                raise ValueError(f"{_PREFIX}{name.upper()} must be positive")
        if self.read_timeout_s <= 0:
            raise ValueError(f"{_PREFIX}READ_TIMEOUT_S must be positive")

    @property
    def limits(self) -> Limits:
        return Limits(paths=self.max_paths, series_buckets=self.series_buckets)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LogsSettings:
        return settings_from_env(cls, _PREFIX, environ)
