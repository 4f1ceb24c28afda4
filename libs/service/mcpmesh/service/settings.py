"""Environment configuration shared by every service (each service README lists these)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mcpmesh.bus.mcp import DEFAULT_MAX_RESULT_BYTES
from mcpmesh.service.admission import AdmissionLimits
from mcpmesh.telemetry.tenants import MetricsSettings

#: A replica's admission defaults: enough concurrency for tools that wait on I/O (LLM calls,
#: stores), a queue that drains within `queue_wait_s`, no org above half of either.
SERVICE_ADMISSION = AdmissionLimits(max_inflight=256, max_queued=256, queue_wait_s=1.0, org_share=0.5)


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _public_key() -> str | None:
    path = _env("MCPMESH_STAMP_PUBLIC_KEY_FILE")
    return Path(path).read_text() if path else _env("MCPMESH_STAMP_PUBLIC_KEY")


def _float(name: str, default: float) -> float:
    return float(_env(name, str(default)) or default)


class StartupError(RuntimeError):
    """The service cannot start (e.g. its Qdrant local-mode directory is held by another
    process); the message says why and what to do. The runner stops with it."""


@dataclass(frozen=True)
class JobSettings:
    """Durable jobs (mcpmesh.service.jobs): leases, heartbeats, the sweeper, retention."""

    lease_s: float = 15.0  # a job whose owner has not renewed it for this long is taken over
    heartbeat_s: float = 1.0  # lease renewal and cancel check, per replica
    sweep_s: float = 5.0  # how often each replica looks for jobs whose lease expired
    retention_h: float = 24.0  # finished jobs are kept this long, then deleted (TTL index)
    max_running: int = 32  # jobs running at once per replica; more wait as `queued`
    max_attempts: int = 3  # runs of a resumable job before an interruption fails it
    value_max_bytes: int = 512 * 1024  # largest result, partial result or checkpoint kept

    def __post_init__(self) -> None:
        if not 0 < 3 * self.heartbeat_s <= self.lease_s:
            raise ValueError(
                "MCPMESH_JOB_HEARTBEAT_S must be positive and at most a third of MCPMESH_JOB_LEASE_S "
                f"(got {self.heartbeat_s:g} and {self.lease_s:g})"
            )
        for name, value in (
            ("MCPMESH_JOB_SWEEP_S", self.sweep_s),
            ("MCPMESH_JOB_RETENTION_H", self.retention_h),
            ("MCPMESH_JOB_MAX_RUNNING", self.max_running),
            ("MCPMESH_JOB_MAX_ATTEMPTS", self.max_attempts),
            ("MCPMESH_JOB_VALUE_MAX_BYTES", self.value_max_bytes),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be positive (got {value:g})")

    @classmethod
    def from_env(cls) -> JobSettings:
        return cls(
            lease_s=_float("MCPMESH_JOB_LEASE_S", cls.lease_s),
            heartbeat_s=_float("MCPMESH_JOB_HEARTBEAT_S", cls.heartbeat_s),
            sweep_s=_float("MCPMESH_JOB_SWEEP_S", cls.sweep_s),
            retention_h=_float("MCPMESH_JOB_RETENTION_H", cls.retention_h),
            max_running=int(_float("MCPMESH_JOB_MAX_RUNNING", cls.max_running)),
            max_attempts=int(_float("MCPMESH_JOB_MAX_ATTEMPTS", cls.max_attempts)),
            value_max_bytes=int(_float("MCPMESH_JOB_VALUE_MAX_BYTES", cls.value_max_bytes)),
        )


@dataclass(frozen=True)
class ServiceSettings:
    nats_url: str = "nats://127.0.0.1:4222"
    stamp_public_key: str | None = None  # PEM; required to serve on the bus
    mongodb_url: str | None = None  # required by services with store kinds (./mesh up sets it)
    mongodb_database: str = "mcpmesh"
    qdrant_url: str | None = None  # unset: Qdrant local mode at qdrant_path
    qdrant_api_key: str | None = None
    qdrant_path: str = ".mesh/qdrant"
    admission: AdmissionLimits = SERVICE_ADMISSION  # in-flight and queue bounds (MCPMESH_MAX_INFLIGHT, ...)
    call_timeout_s: float = 30.0  # deadline of a request that is not a tool call, when the caller sent none
    max_call_s: float = 900.0  # operator cap on any one request, whatever a tool's budget
    shutdown_grace_s: float = 20.0  # how long in-flight calls may finish on SIGTERM
    dev_org: str = "org-dev"  # the org a local stdio/HTTP run acts for
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES  # largest reply sent (in parts past one message)
    jobs: JobSettings = field(default_factory=JobSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)  # /metrics port, tenant cap
    #: Master key entries of tenant secrets (`MeshService(secrets=True)`): never printed.
    secrets_keys: str | None = field(default=None, repr=False)
    secrets_keys_file: str | None = None  # a file of them (a mounted Kubernetes Secret)

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
            admission=AdmissionLimits.from_env(SERVICE_ADMISSION),
            call_timeout_s=float(
                _env("MCPMESH_CALL_TIMEOUT_S", str(cls.call_timeout_s)) or cls.call_timeout_s
            ),
            max_call_s=_float("MCPMESH_MAX_CALL_S", cls.max_call_s),
            shutdown_grace_s=float(
                _env("MCPMESH_SHUTDOWN_GRACE_S", str(cls.shutdown_grace_s)) or cls.shutdown_grace_s
            ),
            dev_org=_env("MCPMESH_DEV_ORG", cls.dev_org) or cls.dev_org,
            max_result_bytes=int(_float("MCPMESH_MAX_RESULT_BYTES", cls.max_result_bytes)),
            jobs=JobSettings.from_env(),
            metrics=MetricsSettings.from_env(),
            secrets_keys=_env("MCPMESH_SECRETS_KEYS"),
            secrets_keys_file=_env("MCPMESH_SECRETS_KEYS_FILE"),
        )
