"""`./mesh up` (the dev runner): clear refusals, a clean start, and a clean stop."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mcpmesh.dev.lifeline import GRACE_S, RUN_ID_ENV, stop_leftovers
from mcpmesh.secrets import MasterKeys


def runner(state: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, MCPMESH_STATE_DIR=str(state))
    env.pop("NATS_URL", None)
    env.pop("MONGODB_URL", None)  # the runner's own embedded store, under `state`
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
    try:  # a zombie has exited: only its exit status waits for a parent to collect it
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def gone_within(pids: list[int], seconds: float) -> list[int]:
    """The pids still alive after waiting up to `seconds` for all of them to go."""
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def wait_for_facts(
    proc: subprocess.Popen[str], facts_file: Path, not_pids: dict[str, int] | None = None
) -> dict:
    """The dev.json this run wrote (not the one a previous run left behind)."""
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(f"runner exited early: {proc.stderr.read() if proc.stderr else ''}")
        assert time.monotonic() < deadline, "dev.json never appeared"
        if facts_file.exists():
            try:
                facts = json.loads(facts_file.read_text())
            except ValueError:  # being written
                facts = {}
            if facts.get("pids") and facts["pids"] != not_pids:
                return facts
        time.sleep(0.2)


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
    facts = wait_for_facts(proc, tmp_path / "dev.json")
    host, port = facts["nats_url"].removeprefix("nats://").split(":")
    with socket.create_connection((host, int(port)), timeout=5):
        pass
    pids = list(facts["pids"].values())
    assert pids and all(alive(p) for p in pids)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    time.sleep(0.2)
    assert not any(alive(p) for p in pids), "orphan processes left behind"


def test_only_starts_the_services_named_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    proc = runner(tmp_path / "typo", "--only", "context,nosuch")
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "--only names no service nosuch: pick from " in err and "context" in err
    assert not (tmp_path / "typo" / "logs").exists()  # nothing was started

    proc = runner(tmp_path / "one", "--only", "context")
    facts = wait_for_facts(proc, tmp_path / "one" / "dev.json")
    assert set(facts["pids"]) == {"nats", "mongo", "mcp-context", "gateway"}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


def test_a_second_runner_is_refused_and_a_sigkilled_runner_takes_everything_with_it(tmp_path: Path) -> None:
    first = runner(tmp_path)
    second: subprocess.Popen[str] | None = None
    try:
        facts = wait_for_facts(first, tmp_path / "dev.json")
        pids = [*facts["pids"].values(), facts["lifeline_pid"]]
        assert len(pids) >= 3 and all(alive(p) for p in pids)

        second = runner(tmp_path)
        _out, err = second.communicate(timeout=60)
        assert second.returncode == 1
        assert (
            f"mesh: another `./mesh up` (pid {first.pid}) is running on {tmp_path} or still stopping: "
            "stop it first, or give this one its own MCPMESH_STATE_DIR"
        ) in err, err
        assert json.loads((tmp_path / "dev.json").read_text()) == facts  # the second one touched nothing
        assert first.poll() is None and all(alive(p) for p in pids)

        first.kill()  # SIGKILL: no handler runs, no finally block
        first.wait()
        assert gone_within(pids, GRACE_S + 20) == [], "orphan processes left behind"
        with (tmp_path / "runner.lock").open("a") as lock:  # released once the watchdog is done
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        for proc in (second, first):
            if proc is not None and proc.poll() is None:  # a failed assertion: stop it the ordinary way
                proc.terminate()
                proc.wait(timeout=60)


SUPERVISED = """
import os, sys, time
from pathlib import Path
from mcpmesh.dev.runner import Supervisor
sup = Supervisor(Path(sys.argv[1]))
sup.lock()
# a shell that ignores SIGTERM and has a child of its own (same process group)
family = sup.start("family", ["sh", "-c", "sleep 300 & echo $! > grandchild.pid; trap '' TERM; wait"], dict(os.environ))
print(family.pid, sup.lifeline.proc.pid, flush=True)
time.sleep(300)
"""


def test_the_supervisor_takes_grandchildren_and_stubborn_children_with_a_killed_runner(
    tmp_path: Path,
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SUPERVISED, str(tmp_path)], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        child, watchdog = map(int, proc.stdout.readline().split())
        grandchild_file = tmp_path / "grandchild.pid"
        deadline = time.monotonic() + 30
        while not (grandchild_file.exists() and grandchild_file.read_text().strip()):
            assert time.monotonic() < deadline, "the child never started its own child"
            time.sleep(0.05)
        grandchild = int(grandchild_file.read_text())
        assert all(alive(p) for p in (child, grandchild, watchdog))
        proc.kill()
        proc.wait()
        assert gone_within([child, grandchild, watchdog], GRACE_S + 20) == []
    finally:
        proc.kill()
        proc.wait()


def test_leftovers_of_a_dead_run_are_stopped_only_when_provably_its(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def sleeper(env: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["sleep", "300"], env=env, start_new_session=True)

    ours = sleeper(dict(os.environ, **{RUN_ID_ENV: "run-1"}))
    stranger = sleeper(dict(os.environ, **{RUN_ID_ENV: "run-2"}))
    try:
        facts = {"run_id": "run-1", "pids": {"nats": ours.pid, "gateway": stranger.pid, "gone": 2**22 + 7}}
        (tmp_path / "dev.json").write_text(json.dumps(facts))
        stop_leftovers(tmp_path / "dev.json")
        assert ours.wait(timeout=30) == -signal.SIGTERM
        assert stranger.poll() is None
        err = capsys.readouterr().err
        assert f"mesh: stopping 1 process(es) an earlier run left behind (pids {ours.pid})" in err
        assert f"mesh: pids {stranger.pid} of an earlier run's dev.json are alive but not provably its" in err
        (tmp_path / "dev.json").write_text(json.dumps({"pids": {"gateway": stranger.pid}}))  # no run id
        stop_leftovers(tmp_path / "dev.json")
        assert stranger.poll() is None and f"mesh: pids {stranger.pid} of" in capsys.readouterr().err
    finally:
        stranger.kill()
        stranger.wait()


def mcp_call(facts: dict, tool: str, arguments: dict) -> dict:
    """One tools/call through the gateway with the printed key (MCP 2026-07-28, plain HTTP)."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": tool,
            "arguments": arguments,
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
            },
        },
    }
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "x-api-key": facts["api_key"],
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": tool,
    }
    req = urllib.request.Request(facts["mcp_url"], data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            reply: dict = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{tool}: HTTP {exc.code}: {exc.read()[:500]!r}") from None
    assert not reply["result"].get("isError"), reply
    return reply["result"]["structuredContent"]


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


def test_a_restart_keeps_the_demo_key_and_the_data(tmp_path: Path) -> None:
    """Stopped and started again on the same .mesh: the printed key still works (the demo org
    and key are reused, not recreated) and a context created before is still there."""
    proc = runner(tmp_path)
    try:
        first = wait_for_facts(proc, tmp_path / "dev.json")
        created = mcp_call(
            first, "context_create", {"title": "kept", "entries": [{"role": "user", "content": "hi"}]}
        )
        mcp_call(
            first, "context_append", {"ctx_id": created["ctx_id"], "role": "assistant", "content": "hello"}
        )
        keys_file = tmp_path / "secrets-keys"  # the dev master key of tenant secrets, made once
        master = keys_file.read_text()
        assert MasterKeys.parse(master).active == "dev" and keys_file.stat().st_mode & 0o777 == 0o600
        environ = Path(f"/proc/{first['pids']['mcp-context']}/environ").read_bytes().split(b"\0")
        assert f"MCPMESH_SECRETS_KEYS_FILE={keys_file}".encode() in environ
    finally:
        stop(proc)
    proc = runner(tmp_path)
    try:
        again = wait_for_facts(proc, tmp_path / "dev.json", not_pids=first["pids"])
        assert keys_file.read_text() == master  # reused on restart: earlier secrets still open
        assert (again["org_id"], again["key_id"], again["api_key"]) == (
            first["org_id"],
            first["key_id"],
            first["api_key"],
        )
        assert "mongo" in again["pids"] and (tmp_path / "mongo" / "data").is_dir()  # the store of .mesh
        got = mcp_call(again, "context_get", {"ctx_id": created["ctx_id"]})
        assert got["title"] == "kept"
        assert [(e["role"], e["content"]) for e in got["entries"]] == [("user", "hi"), ("assistant", "hello")]
    finally:
        stop(proc)
