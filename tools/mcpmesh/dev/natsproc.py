"""A real nats-server (the local binary) for tests and benchmarks.

`LocalNatsServer(users=BusUsers...)` runs it with the mesh's generated users and permissions,
as the test fixtures and `./mesh up` do; `url_for(user)` is the URL a component connects with.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcpmesh.tenancy.natsauth import BusUsers


def nats_server_binary() -> str | None:
    return shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if os.access("/usr/sbin/nats-server", os.X_OK) else None
    )


def config_dir_argv(binary: str, port: int, conf_file: Path, pid_file: Path) -> list[str]:
    """nats-server on 127.0.0.1:`port` with a bus config directory's config and pid file
    (reloadable by `meshctl bus-user`), as `./mesh up` runs it."""
    return [binary, "-a", "127.0.0.1", "-p", str(port), "-c", str(conf_file), "-P", str(pid_file)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, timeout: float, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("nats-server exited during start")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nats-server did not listen on {port} within {timeout}s")


class LocalNatsServer:
    """`nats-server` child process, open, or on `config` (nats-server configuration text, which
    enables JetStream itself), or on one rendered from `users` (then `url_for(user)` carries
    that user's password)."""

    def __init__(
        self, config: str | None = None, port: int | None = None, *, users: BusUsers | None = None
    ) -> None:
        binary = nats_server_binary()
        if binary is None:
            raise RuntimeError("nats-server is not installed: apt-get install nats-server")
        self.binary = binary
        self.port = port or _free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.dir = Path(tempfile.mkdtemp(prefix="mcpmesh-nats-"))
        self.users = users
        self.conf = self.dir / "nats.conf"
        self.argv = [binary, "-a", "127.0.0.1", "-p", str(self.port)]
        if users is not None:
            config = self._render()
        if config is not None:  # JetStream and its store dir come from the config: reloadable
            self.conf.write_text(config)
            self.argv += ["-c", str(self.conf)]
        else:
            self.argv += ["-js", "-sd", str(self.dir / "js")]
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def _render(self) -> str:
        assert self.users is not None
        return self.users.render(store_dir=str(self.dir / "js"))

    def url_for(self, user: str) -> str:
        """The URL `user` connects with; a mesh user the server does not know yet is added
        (config rewritten, server reloaded), so a test may run a service of any name."""
        if self.users is None:
            return self.url
        if self.users.ensure([user]):
            self.reload()
        return self.users.url(self.url, user)

    def reload(self) -> None:
        """Rewrite the config from `users` and reload it (SIGHUP), waiting until it is in force."""
        assert self.users is not None and self.proc is not None
        log = self.dir / "nats.log"
        before = log.read_bytes().count(b"Reloaded server configuration")
        self.conf.write_text(self._render())
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while log.read_bytes().count(b"Reloaded server configuration") == before:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nats-server did not reload its configuration: see {log}")
            time.sleep(0.01)

    def start(self) -> None:
        log = (self.dir / "nats.log").open("ab")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        proc = self.proc
        _wait_listening(self.port, 10.0, lambda: proc.poll() is None)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
