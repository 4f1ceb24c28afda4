"""`./mesh up` (the dev runner): clear refusals, a clean start, and a clean stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def runner(state: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, MCPMESH_STATE_DIR=str(state))
    env.pop("NATS_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "mcpmesh.dev.runner", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_port_in_use_is_refused_with_one_clear_sentence(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = runner(tmp_path, "--nats-port", str(port))
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert f"port {port} is in use: stop what listens there or pick another with --nats-port N" in err
    assert not (tmp_path / "dev.json").exists()
    assert not (tmp_path / "logs").exists()  # nothing was started


def test_up_writes_dev_json_and_stops_everything_on_sigterm(tmp_path: Path) -> None:
    proc = runner(tmp_path)
    facts_file = tmp_path / "dev.json"
    deadline = time.monotonic() + 90
    while not facts_file.exists():
        if proc.poll() is not None:
            pytest.fail(f"runner exited early: {proc.stderr.read() if proc.stderr else ''}")
        assert time.monotonic() < deadline, "dev.json never appeared"
        time.sleep(0.2)
    facts = json.loads(facts_file.read_text())
    host, port = facts["nats_url"].removeprefix("nats://").split(":")
    with socket.create_connection((host, int(port)), timeout=5):
        pass
    pids = list(facts["pids"].values())
    assert pids and all(alive(p) for p in pids)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    time.sleep(0.2)
    assert not any(alive(p) for p in pids), "orphan processes left behind"
