"""Configuration from the environment."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mcpmesh.context import ContextSettings


def test_defaults() -> None:
    settings = ContextSettings.from_env({})
    assert settings == ContextSettings()
    assert settings.cold_after_s == 7 * 24 * 3600 and settings.system_org == "org-system"


def test_variables_are_read_and_typed() -> None:
    settings = ContextSettings.from_env(
        {
            "CONTEXT_COLD_AFTER_S": "3600",
            "CONTEXT_MAX_ENTRY_BYTES": "1000",
            "CONTEXT_TOKEN_ENCODING": "approx",
            "CONTEXT_SYSTEM_ORG": "org-global",
            "CONTEXT_SWEEP_INTERVAL_S": "0",
            "UNRELATED": "x",
        }
    )
    assert settings.cold_after_s == 3600.0 and isinstance(settings.cold_after_s, float)
    assert settings.max_entry_bytes == 1000 and isinstance(settings.max_entry_bytes, int)
    assert (settings.token_encoding, settings.system_org, settings.sweep_interval_s) == (
        "approx",
        "org-global",
        0,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CONTEXT_MAX_ENTRY_BYTES": "lots"}, "CONTEXT_MAX_ENTRY_BYTES='lots' is not a valid int"),
        ({"CONTEXT_COLD_AFTER_S": "0"}, "at least 1 second"),
        ({"CONTEXT_SYSTEM_ORG": "System"}, "invalid org id"),
        ({"CONTEXT_PENDING_STALE_S": "5"}, "larger than CONTEXT_WRITE_TIMEOUT_S"),
        ({"CONTEXT_MAX_REPLY_BYTES": "0"}, "CONTEXT_MAX_REPLY_BYTES must be positive"),
    ],
)
def test_bad_values_are_refused_clearly(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ContextSettings.from_env(env)


@pytest.mark.parametrize("mode", [[], ["--stdio"]])
def test_without_a_store_url_the_service_stops_with_one_sentence(nats_url: str, mode: list[str]) -> None:
    """On the bus or alone over stdio, nothing falls back to an in-process database."""
    from mcpmesh.store import MISSING_URL
    from mcpmesh.tenancy.stamp import generate_signing_key_pem, public_key_pem

    env = {k: v for k, v in os.environ.items() if k != "MONGODB_URL"}
    env.update(NATS_URL=nats_url, MCPMESH_STAMP_PUBLIC_KEY=public_key_pem(generate_signing_key_pem()))
    done = subprocess.run(
        [sys.executable, "-m", "mcpmesh.context", *mode],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == f"mcpmesh-context: {MISSING_URL}"
