"""Children of `./mesh up` die with it, however it dies (SIGKILL included).

Two mechanisms, both generic for any child the runner's Supervisor starts:

- Linux: each child asks the kernel for SIGTERM when its parent dies (`prctl(PR_SET_PDEATHSIG)`,
  set between fork and exec, so it holds for nats-server as for a Python service).
- Everywhere (macOS has no PDEATHSIG): a watchdog process reads a pipe whose write end only the
  runner holds. The runner tells it the process group of each child it starts (`+<pgid>`) and
  stops (`-<pgid>`). When the pipe reaches EOF, i.e. the runner is gone however it went, the
  watchdog sends SIGTERM to every group still listed and SIGKILL to what is left after a grace
  period. A child's own children are in its group (each child starts a new session), so they
  go too, unless they start sessions of their own.

The watchdog also holds the state dir's lock (see `runner.py`), so a new `./mesh up` cannot
start on the same `.mesh/` before the old one's processes are gone.

    python -m mcpmesh.dev.lifeline <read fd>     # started by `Lifeline.start`, not by hand
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

#: Time the children get between SIGTERM and SIGKILL once the runner is gone.
GRACE_S: Final = 10.0
#: Environment variable carrying the id of the run that started a process (see stop_leftovers).
RUN_ID_ENV: Final = "MCPMESH_RUN_ID"
_PR_SET_PDEATHSIG: Final = 1


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child get SIGTERM when this process dies (Linux; else None)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: the child only calls it
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


class Lifeline:
    """The runner's end of the watchdog pipe."""

    def __init__(self, proc: subprocess.Popen[bytes], write_fd: int) -> None:
        self.proc = proc
        self._fd = write_fd

    @classmethod
    def start(cls, *, keep_fds: tuple[int, ...] = ()) -> Lifeline:
        """Start the watchdog; `keep_fds` (e.g. a lock) stay open in it until it is done."""
        read_fd, write_fd = os.pipe()  # neither end is inherited by other children
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mcpmesh.dev.lifeline", str(read_fd)],
                pass_fds=(read_fd, *keep_fds),
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C at the terminal is the runner's to handle, not its
            )
        finally:
            os.close(read_fd)
        return cls(proc, write_fd)

    def watch(self, pgid: int) -> None:
        """Stop process group `pgid` if the runner dies."""
        self._send(f"+{pgid}")

    def forget(self, pgid: int) -> None:
        """Process group `pgid` was stopped: never signal it (its id may be reused)."""
        self._send(f"-{pgid}")

    def _send(self, line: str) -> None:
        try:
            os.write(self._fd, f"{line}\n".encode())
        except BrokenPipeError:  # the watchdog is gone: PDEATHSIG (Linux) is what is left
            print(
                "mesh: the lifeline watchdog stopped; children may outlive a killed runner", file=sys.stderr
            )

    def close(self, timeout: float = 5.0) -> None:
        """A clean stop: close the pipe; the watchdog finds nothing left and exits."""
        os.close(self._fd)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout)


def stop_groups(pgids: Iterable[int], grace_s: float = GRACE_S, *, reap: Callable[[], object] = list) -> None:
    """SIGTERM each process group, SIGKILL those not empty after `grace_s`. `reap` is called while
    waiting, so a parent can collect its exited children (a zombie still counts as a member)."""
    groups = set(pgids)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while groups and time.monotonic() < deadline:
        time.sleep(0.05)
        reap()
        groups = {g for g in groups if _group_alive(g)}
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def stop_leftovers(dev_json: Path) -> None:
    """Stop what a runner that is gone (the caller holds the state dir's lock) left running.

    Only processes listed in its dev.json *and* carrying its run id in their environment
    (Linux `/proc/<pid>/environ`) are stopped: a pid alone may since belong to someone else.
    Others still alive are named, not touched.
    """
    try:
        facts = json.loads(dev_json.read_text())
        pids = [int(p) for p in facts["pids"].values()]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return  # no dev.json (or not one of ours): nothing to go by
    alive = [p for p in pids if p > 1 and _alive(p)]
    run_id = facts.get("run_id")  # absent in a dev.json written before runs had ids
    ours = [p for p in alive if run_id and _carries(p, f"{RUN_ID_ENV}={run_id}")]
    if ours:
        print(
            f"mesh: stopping {len(ours)} process(es) an earlier run left behind (pids {_listed(ours)})",
            file=sys.stderr,
        )
        stop_groups(ours)
    others = [p for p in alive if p not in ours]
    if others:
        print(
            f"mesh: pids {_listed(others)} of an earlier run's dev.json are alive but not provably its: "
            "left alone (stop them yourself if they are)",
            file=sys.stderr,
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _carries(pid: int, entry: str) -> bool:
    try:
        return entry.encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:  # gone, not ours to read, or no /proc (macOS)
        return False


def _listed(pids: list[int]) -> str:
    return ", ".join(map(str, pids))


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    groups: set[int] = set()
    with os.fdopen(int(argv[0]), "rb") as pipe:
        for line in pipe:  # ends at EOF: the runner closed it or died
            text = line.decode(errors="replace").strip()
            with contextlib.suppress(ValueError):
                pgid = int(text[1:])
                if text.startswith("+") and pgid > 1:
                    groups.add(pgid)
                elif text.startswith("-"):
                    groups.discard(pgid)
    stop_groups(groups)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
