"""Old MCP clients for the legacy-session tests, installed once into a cache and reused.

- mcp 1.x (the Python SDK langchain-mcp-adapters uses) in a venv of its own (it cannot share
  the repo's venv, which pins mcp 2): `MCP1_VERSION`, built with `python3.11 -m venv` + pip.
- mcp-remote (the stdio bridge Claude Desktop runs): `MCP_REMOTE_VERSION`, `npm install`ed.

The cache is `$MCPMESH_COMPAT_CACHE`, else `<repo>/.mesh/cache/compat`; each install goes into
a folder named after its pinned version, built aside and renamed into place, under a file lock
(parallel test processes build it once). A failed build raises `CompatSetupError` saying what
failed and how to retry.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

MCP1_VERSION: Final = "1.30.0"  # the last 1.x
MCP_REMOTE_VERSION: Final = "0.15.1"
REPO: Final = Path(__file__).resolve().parents[2]
MCP1_CLIENT: Final = REPO / "tools" / "compat" / "mcp1_client.py"
_INSTALL_TIMEOUT_S: Final = 600


class CompatSetupError(RuntimeError):
    """An old client could not be installed into the cache."""


def cache_dir() -> Path:
    configured = os.environ.get("MCPMESH_COMPAT_CACHE")
    return Path(configured) if configured else REPO / ".mesh" / "cache" / "compat"


def mcp1_python() -> Path:
    """The python of a venv with mcp==MCP1_VERSION (built on first use)."""
    target = cache_dir() / f"mcp1-{MCP1_VERSION}"

    def build(into: Path) -> None:
        base = shutil.which("python3.11") or sys.executable
        _run([base, "-m", "venv", str(into)], "create the mcp 1.x venv")
        pip = [str(into / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        _run([*pip, f"mcp=={MCP1_VERSION}"], f"pip install mcp=={MCP1_VERSION}")

    _cached(target, build)
    return target / "bin" / "python"


def mcp_remote() -> Path:
    """The mcp-remote executable, version MCP_REMOTE_VERSION (installed on first use)."""
    target = cache_dir() / f"mcp-remote-{MCP_REMOTE_VERSION}"

    def build(into: Path) -> None:
        npm = shutil.which("npm")
        if npm is None:
            raise CompatSetupError("npm is not installed: install Node.js 20+ (apt-get install nodejs npm)")
        into.mkdir(parents=True)
        _run(
            [
                npm,
                "install",
                "--prefix",
                str(into),
                "--no-audit",
                "--no-fund",
                "--silent",
                f"mcp-remote@{MCP_REMOTE_VERSION}",
            ],
            f"npm install mcp-remote@{MCP_REMOTE_VERSION}",
        )

    _cached(target, build)
    return target / "node_modules" / ".bin" / "mcp-remote"


def _cached(target: Path, build: Callable[[Path], None]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".complete").exists():
            return
        building = target.with_name(target.name + ".building")
        shutil.rmtree(building, ignore_errors=True)
        shutil.rmtree(target, ignore_errors=True)
        build(building)
        (building / ".complete").touch()
        building.rename(target)


def _run(argv: list[str], what: str) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=_INSTALL_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CompatSetupError(f"could not {what}: {exc!r}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-2000:]
        raise CompatSetupError(
            f"could not {what} (exit {done.returncode}) into {cache_dir()}: {tail}\n"
            "PyPI and the npm registry must be reachable; delete the folder to retry from scratch"
        )
