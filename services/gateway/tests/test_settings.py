"""GatewaySettings.from_env: defaults, parsing, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcpmesh.gateway.settings import DEFAULT_ALLOWED_ORIGINS, GatewaySettings, SettingsError
from mcpmesh.tenancy.stamp import generate_signing_key_pem

PEM = generate_signing_key_pem()
BASE = {"MCPMESH_STAMP_SIGNING_KEY": PEM, "MCPMESH_ADMIN_KEY": "mk_admin_" + "x" * 20}


def test_defaults() -> None:
    s = GatewaySettings.from_env(BASE)
    assert (s.host, s.port, s.nats_url) == ("127.0.0.1", 8080, "nats://127.0.0.1:4222")
    assert s.allowed_origins == DEFAULT_ALLOWED_ORIGINS
    assert s.max_body_bytes == 1_048_576 and s.call_timeout_s == 30.0 and s.key_grace_s == 3600.0
    assert s.mongodb_url is None and s.mongodb_database == "mcpmesh"
    assert len(s.session_key()) == 32
    limits = s.admission
    assert (limits.max_inflight, limits.max_queued, limits.queue_wait_s, limits.org_share) == (
        128,
        64,
        0.5,
        0.5,
    )


def test_everything_from_the_environment(tmp_path: Path) -> None:
    key_file = tmp_path / "signing.pem"
    key_file.write_text(PEM)
    env = {
        "MCPMESH_STAMP_SIGNING_KEY_FILE": str(key_file),
        "MCPMESH_ADMIN_KEY": " admin-key-0123456789 ",
        "GATEWAY_HOST": "0.0.0.0",
        "GATEWAY_PORT": "9000",
        "NATS_URL": "nats://nats:4222",
        "MONGODB_URL": "mongodb://mongo",
        "MONGODB_DATABASE": "mesh",
        "MCPMESH_KEY_PEPPER": "pepper",
        "MCPMESH_SESSION_SECRET": "secret",
        "MCPMESH_ALLOWED_ORIGINS": "https://app.example.com/, http://localhost",
        "MCPMESH_MAX_BODY_BYTES": "4096",
        "MCPMESH_CALL_TIMEOUT_S": "2.5",
        "MCPMESH_KEY_GRACE_S": "60",
        "MCPMESH_PUBLIC_URL": "https://mcp.example.com/",
        "MCPMESH_HEALTH_INTERVAL_S": "0.5",
        "MCPMESH_REPLICA_FORGET_S": "120",
        "MCPMESH_MAX_INFLIGHT": "32",
        "MCPMESH_MAX_QUEUED": "0",
        "MCPMESH_QUEUE_WAIT_S": "2",
        "MCPMESH_ORG_SHARE": "1",
    }
    s = GatewaySettings.from_env(env)
    assert (s.admission.max_inflight, s.admission.max_queued, s.admission.queue_wait_s) == (32, 0, 2.0)
    assert s.admission.org_inflight == 32 and s.admission.org_queued == 0
    assert s.stamp_signing_key == PEM and s.admin_key == "admin-key-0123456789"
    assert (s.host, s.port, s.nats_url, s.mongodb_url, s.mongodb_database) == (
        "0.0.0.0",
        9000,
        "nats://nats:4222",
        "mongodb://mongo",
        "mesh",
    )
    assert s.key_pepper == b"pepper" and s.session_secret == b"secret"
    assert s.allowed_origins == ("https://app.example.com", "http://localhost")
    assert (s.max_body_bytes, s.call_timeout_s, s.key_grace_s) == (4096, 2.5, 60.0)
    assert s.public_url == "https://mcp.example.com"
    assert (s.health_interval_s, s.replica_forget_s) == (0.5, 120.0)
    assert s.session_key() != GatewaySettings.from_env(BASE).session_key()


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"MCPMESH_ADMIN_KEY": "x" * 20}, "MCPMESH_STAMP_SIGNING_KEY"),
        ({"MCPMESH_STAMP_SIGNING_KEY": PEM}, "MCPMESH_ADMIN_KEY"),
        ({**BASE, "GATEWAY_PORT": "eighty"}, "GATEWAY_PORT='eighty' is not an integer"),
        ({**BASE, "MCPMESH_CALL_TIMEOUT_S": "0"}, "MCPMESH_CALL_TIMEOUT_S='0' must be at least"),
        ({**BASE, "MCPMESH_MAX_BODY_BYTES": "12"}, "MCPMESH_MAX_BODY_BYTES"),
        ({**BASE, "MCPMESH_HEALTH_INTERVAL_S": "0"}, "MCPMESH_HEALTH_INTERVAL_S='0' must be at least"),
        ({**BASE, "MCPMESH_STAMP_SIGNING_KEY_FILE": "/nonexistent/key.pem"}, "cannot be read"),
        ({**BASE, "MCPMESH_MAX_INFLIGHT": "lots"}, "MCPMESH_MAX_INFLIGHT='lots' is not an integer"),
        ({**BASE, "MCPMESH_MAX_INFLIGHT": "0"}, "MCPMESH_MAX_INFLIGHT=0 must be at least 1"),
        ({**BASE, "MCPMESH_QUEUE_WAIT_S": "0"}, "MCPMESH_QUEUE_WAIT_S=0 must be more than 0"),
        ({**BASE, "MCPMESH_ORG_SHARE": "0"}, "MCPMESH_ORG_SHARE=0 must be more than 0 and at most 1"),
    ],
)
def test_errors_name_the_variable(env: dict[str, str], words: str) -> None:
    with pytest.raises(SettingsError, match=words):
        GatewaySettings.from_env(env)


def test_the_gateway_needs_a_store_url() -> None:
    """No in-process fallback: without MONGODB_URL the gateway does not start, and says what to do."""
    from mcpmesh.gateway.app import GatewayStartupError, build_app
    from mcpmesh.store import MISSING_URL

    with pytest.raises(GatewayStartupError) as refused:
        build_app(GatewaySettings.from_env(BASE))
    assert str(refused.value) == MISSING_URL
