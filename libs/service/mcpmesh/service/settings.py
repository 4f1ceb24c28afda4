"""Environment configuration shared by every service (each service README lists these)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _public_key() -> str | None:
    path = _env("MCPMESH_STAMP_PUBLIC_KEY_FILE")
    return Path(path).read_text() if path else _env("MCPMESH_STAMP_PUBLIC_KEY")


@dataclass(frozen=True)
class ServiceSettings:
    nats_url: str = "nats://127.0.0.1:4222"
    stamp_public_key: str | None = None  # PEM; required to serve on the bus
    mongodb_url: str | None = None  # required by services with store kinds (./mesh up sets it)
    mongodb_database: str = "mcpmesh"
    qdrant_url: str | None = None  # unset: Qdrant local mode at qdrant_path
    qdrant_api_key: str | None = None
    qdrant_path: str = ".mesh/qdrant"
    max_inflight: int = 256  # concurrent calls per replica
    call_timeout_s: float = 30.0  # upper bound when the caller sent no deadline
    shutdown_grace_s: float = 20.0  # how long in-flight calls may finish on SIGTERM
    dev_org: str = "org-dev"  # the org a local stdio/HTTP run acts for

    @classmethod
    def from_env(cls) -> ServiceSettings:
        return cls(
            nats_url=_env("NATS_URL", cls.nats_url) or cls.nats_url,
            stamp_public_key=_public_key(),
            mongodb_url=_env("MONGODB_URL"),
            mongodb_database=_env("MONGODB_DATABASE", cls.mongodb_database) or cls.mongodb_database,
            qdrant_url=_env("QDRANT_URL"),
            qdrant_api_key=_env("QDRANT_API_KEY"),
            qdrant_path=_env("QDRANT_PATH", cls.qdrant_path) or cls.qdrant_path,
            max_inflight=int(_env("MCPMESH_MAX_INFLIGHT", str(cls.max_inflight)) or cls.max_inflight),
            call_timeout_s=float(
                _env("MCPMESH_CALL_TIMEOUT_S", str(cls.call_timeout_s)) or cls.call_timeout_s
            ),
            shutdown_grace_s=float(
                _env("MCPMESH_SHUTDOWN_GRACE_S", str(cls.shutdown_grace_s)) or cls.shutdown_grace_s
            ),
            dev_org=_env("MCPMESH_DEV_ORG", cls.dev_org) or cls.dev_org,
        )
