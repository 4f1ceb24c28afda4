"""The gateway's configuration: one typed object read from the environment (see README)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mcpmesh.bus.mcp import DEFAULT_MAX_RESULT_BYTES
from mcpmesh.service.admission import AdmissionLimits
from mcpmesh.telemetry.tenants import MetricsSettings

DEFAULT_ALLOWED_ORIGINS = (
    "http://localhost",
    "http://127.0.0.1",
    "https://localhost",
    "https://127.0.0.1",
)


#: A replica's admission defaults (MCPMESH_MAX_INFLIGHT etc., see README "Admission"), sized for
#: a 2-CPU host where one replica completes some 300-700 calls/s: a short queue (64, at most
#: 0.5 s) keeps an admitted call well under 2 s under overload; no org holds more than half.
GATEWAY_ADMISSION = AdmissionLimits(max_inflight=128, max_queued=64, queue_wait_s=0.5, org_share=0.5)


class SettingsError(ValueError):
    """A missing or malformed variable, named in one sentence the operator can act on."""


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value if value not in (None, "") else None


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise SettingsError(f"{name}={raw!r} must be at least {minimum:g}")
    return value


def _integer(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={raw!r} must be at least {minimum}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _get(env, name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} must be true or false")


def _secret_file_or_value(env: Mapping[str, str], name: str) -> str | None:
    path = _get(env, f"{name}_FILE")
    if path is not None:
        try:
            return Path(path).read_text()
        except OSError as exc:
            raise SettingsError(f"{name}_FILE={path!r} cannot be read: {exc.strerror}") from None
    return _get(env, name)


@dataclass(frozen=True)
class GatewaySettings:
    stamp_signing_key: str  # Ed25519 private key, PEM (PKCS8)
    admin_key: str
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None  # e.g. https://mcp.example.com; else derived from each request
    nats_url: str = "nats://127.0.0.1:4222"
    mongodb_url: str | None = None  # required (./mesh up sets it); unset: refused at start
    mongodb_database: str = "mcpmesh"
    key_pepper: bytes = b""
    session_secret: bytes | None = None  # unset: derived from the stamp signing key
    allowed_origins: tuple[str, ...] = DEFAULT_ALLOWED_ORIGINS
    max_body_bytes: int = 1_048_576
    call_timeout_s: float = 30.0  # deadline of a request that is not a tool call (a tool has its budget)
    max_call_s: float = 900.0  # operator cap on any one request, whatever a tool's budget
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES  # largest service reply reassembled from parts
    key_grace_s: float = 3600.0
    stamp_ttl_s: int = 60
    catalog_ttl_s: float = 30.0
    discovery_interval_s: float = 5.0
    health_interval_s: float = 1.0  # nats.micro PING round: two missed, a replica gets no new requests
    replica_forget_s: float = 600.0  # a replica silent this long is forgotten
    session_ttl_s: float = 86_400.0
    sse_ping_s: float = 15.0
    task_poll_s: float = 1.0  # tasks/result polls a job this often; tasks' pollInterval (a job heartbeat)
    run_writers: bool = True  # the usage/audit writers in this process (GATEWAY_RUN_WRITERS)
    admission: AdmissionLimits = GATEWAY_ADMISSION  # in-flight and queue bounds (MCPMESH_MAX_INFLIGHT, ...)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)  # tenant label cap (MCPMESH_METRICS_*)
    replica_name: str = field(default_factory=lambda: f"gateway-{os.getpid()}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GatewaySettings:
        env = os.environ if environ is None else environ
        signing = _secret_file_or_value(env, "MCPMESH_STAMP_SIGNING_KEY")
        if signing is None:
            raise SettingsError(
                "MCPMESH_STAMP_SIGNING_KEY (or _FILE) is required: the Ed25519 private key (PEM) "
                "the gateway signs tenant stamps with"
            )
        admin_key = _secret_file_or_value(env, "MCPMESH_ADMIN_KEY")
        if admin_key is None:
            raise SettingsError("MCPMESH_ADMIN_KEY (or _FILE) is required: the key of the admin API")
        pepper = _secret_file_or_value(env, "MCPMESH_KEY_PEPPER")
        session = _secret_file_or_value(env, "MCPMESH_SESSION_SECRET")
        origins = _get(env, "MCPMESH_ALLOWED_ORIGINS")
        try:
            admission = AdmissionLimits.from_env(GATEWAY_ADMISSION, env)
            metrics = MetricsSettings.from_env(env)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        return cls(
            stamp_signing_key=signing,
            admin_key=admin_key.strip(),
            host=_get(env, "GATEWAY_HOST") or cls.host,
            port=_integer(env, "GATEWAY_PORT", cls.port, minimum=0),
            public_url=(_get(env, "MCPMESH_PUBLIC_URL") or "").rstrip("/") or None,
            nats_url=_get(env, "NATS_URL") or cls.nats_url,
            mongodb_url=_get(env, "MONGODB_URL"),
            mongodb_database=_get(env, "MONGODB_DATABASE") or cls.mongodb_database,
            key_pepper=pepper.strip().encode() if pepper else b"",
            session_secret=session.strip().encode() if session else None,
            allowed_origins=(
                tuple(o.strip().rstrip("/") for o in origins.split(",") if o.strip())
                if origins is not None
                else DEFAULT_ALLOWED_ORIGINS
            ),
            max_body_bytes=_integer(env, "MCPMESH_MAX_BODY_BYTES", cls.max_body_bytes, minimum=1024),
            call_timeout_s=_number(env, "MCPMESH_CALL_TIMEOUT_S", cls.call_timeout_s, minimum=0.1),
            max_result_bytes=_integer(env, "MCPMESH_MAX_RESULT_BYTES", cls.max_result_bytes, minimum=65536),
            max_call_s=_number(env, "MCPMESH_MAX_CALL_S", cls.max_call_s, minimum=0.1),
            key_grace_s=_number(env, "MCPMESH_KEY_GRACE_S", cls.key_grace_s),
            stamp_ttl_s=_integer(env, "MCPMESH_STAMP_TTL_S", cls.stamp_ttl_s, minimum=10),
            catalog_ttl_s=_number(env, "MCPMESH_CATALOG_TTL_S", cls.catalog_ttl_s, minimum=0.0),
            discovery_interval_s=_number(
                env, "MCPMESH_DISCOVERY_INTERVAL_S", cls.discovery_interval_s, minimum=0.1
            ),
            health_interval_s=_number(env, "MCPMESH_HEALTH_INTERVAL_S", cls.health_interval_s, minimum=0.05),
            replica_forget_s=_number(env, "MCPMESH_REPLICA_FORGET_S", cls.replica_forget_s, minimum=1.0),
            session_ttl_s=_number(env, "MCPMESH_SESSION_TTL_S", cls.session_ttl_s, minimum=60.0),
            sse_ping_s=_number(env, "MCPMESH_SSE_PING_S", cls.sse_ping_s, minimum=0.05),
            task_poll_s=_number(env, "MCPMESH_TASK_POLL_S", cls.task_poll_s, minimum=0.05),
            run_writers=_flag(env, "GATEWAY_RUN_WRITERS", cls.run_writers),
            admission=admission,
            metrics=metrics,
            replica_name=_get(env, "MCPMESH_REPLICA_NAME") or f"gateway-{os.getpid()}",
        )

    def session_key(self) -> bytes:
        """32 bytes for AES-GCM session tokens; every replica with the same secrets derives the same."""
        material = self.session_secret or self.stamp_signing_key.encode()
        return hashlib.sha256(b"mcpmesh-gateway-session-v1\x00" + material).digest()
