"""The embedded document store for tests and the dev runner: a SecantusDB server process.

SecantusDB (PyPI `SecantusDB`, GPL-2.0, beta) is a MongoDB wire-protocol server written in
Python on WiredTiger. It runs here as its own process, like nats-server, so every
process of the platform reaches the same data through the real driver:

    python -m secantus --config DIR/secantusd.toml --host 127.0.0.1 --port PORT \
        --storage-path DIR/data --standalone

- `--standalone`: a plain single server in `hello` (no replica-set advertisement, no
  oplog), as a standalone mongod; mcpmesh uses neither transactions nor change streams.
- `--config` names a file of our own so no `secantusd.toml` in the working directory or
  the home directory changes its settings.
- Data in `DIR/data` persists across restarts; WiredTiger journals every commit and the
  driver asks for `j: true` (mcpmesh.store), so an acknowledged write survives a SIGKILL.
- Clients connect with `retryWrites=false` (see `embedded_url`).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

READY_TIMEOUT_S = 30.0


class StoreStartError(RuntimeError):
    """The store did not come up; the message says why and where its log is."""


def embedded_url(port: int) -> str:
    # retryWrites=false: the server's retryable-write bookkeeping makes each write slower as
    # writes accumulate, and a standalone server has no retryable writes to offer anyway.
    return f"mongodb://127.0.0.1:{port}/?retryWrites=false&directConnection=true"


def store_argv(home: Path, port: int) -> list[str]:
    """The command line of a SecantusDB server keeping its data under `home` (created)."""
    (home / "data").mkdir(parents=True, exist_ok=True)
    config = home / "secantusd.toml"
    if not config.exists():
        config.write_text("# mcpmesh: an empty file, so no other secantusd.toml is picked up.\n")
    return [
        sys.executable,
        "-m",
        "secantus",
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        str(home / "data"),
        "--standalone",
        "--log-level",
        "INFO",
    ]


def wait_until_answering(
    url: str, log: Path, alive: Callable[[], bool], timeout: float = READY_TIMEOUT_S
) -> None:
    """Until the server answers `ping`; StoreStartError if it exits or stays silent."""
    deadline = time.monotonic() + timeout
    client: MongoClient[dict[str, object]] = MongoClient(url, serverSelectionTimeoutMS=250, connect=False)
    try:
        while time.monotonic() < deadline:
            if not alive():
                raise StoreStartError(_exit_reason(log))
            try:
                client.admin.command("ping")
                return
            except PyMongoError:
                time.sleep(0.05)
    finally:
        client.close()
    raise StoreStartError(f"the embedded store (SecantusDB) did not answer within {timeout:.0f}s: see {log}")


def _exit_reason(log: Path) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        text = ""
    if "already being managed by another process" in text:
        return (
            "the embedded store's data directory is in use by another process "
            f"(another ./mesh up on the same .mesh?): see {log}"
        )
    if "No module named secantus" in text:
        return "SecantusDB is not installed: run ./mesh again to install the dependencies"
    return f"the embedded store (SecantusDB) exited at start: see {log}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalMongoServer:
    """A SecantusDB child process on a free port; data in `home` (a temporary directory if None)."""

    def __init__(self, home: Path | None = None, port: int | None = None) -> None:
        self.temporary = home is None
        self.home = home if home is not None else Path(tempfile.mkdtemp(prefix="mcpmesh-mongo-"))
        self.port = port or free_port()
        self.url = embedded_url(self.port)
        self.log = self.home / "secantus.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        argv = store_argv(self.home, self.port)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        proc = self.proc
        try:
            wait_until_answering(self.url, self.log, lambda: proc.poll() is None)
        except StoreStartError:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM (the server checkpoints and closes its files), SIGKILL after 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is flushed or checkpointed (tests of durability)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        if self.temporary:
            shutil.rmtree(self.home, ignore_errors=True)
