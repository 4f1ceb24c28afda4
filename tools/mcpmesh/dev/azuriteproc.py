"""Azurite (npm `azurite`, the official Azure Storage emulator) for tests and `./mesh up`.

The pinned package is installed once with npm into a cache folder (`MCPMESH_CACHE_DIR`, else
`~/.cache/mcpmesh`), then `azurite-blob` runs as a child process on a free port with its data
in a folder of its own. It serves the real Blob API for the well-known development account;
`container_sas_url` signs container SAS URLs for it as a storage account would.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

AZURITE_VERSION: Final = "3.37.0"
ACCOUNT: Final = "devstoreaccount1"
#: Azurite's published development key (not a secret: every Azurite has it).
ACCOUNT_KEY: Final = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
START_TIMEOUT_S: Final = 60.0


def cache_dir() -> Path:
    return Path(os.environ.get("MCPMESH_CACHE_DIR") or Path.home() / ".cache" / "mcpmesh")


def azurite_blob_binary() -> Path:
    """`azurite-blob` of the pinned version, installed into the cache on first use (npm)."""
    home = cache_dir() / f"azurite-{AZURITE_VERSION}"
    binary = home / "node_modules" / ".bin" / "azurite-blob"
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("Azurite needs Node.js and npm: install them (e.g. apt-get install nodejs npm)")
    home.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="azurite-", dir=home.parent))
    result = subprocess.run(
        [npm, "install", "--prefix", str(staging), f"azurite@{AZURITE_VERSION}", "--no-audit", "--no-fund"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(f"npm install azurite@{AZURITE_VERSION} failed: {result.stderr.strip()[-500:]}")
    try:
        staging.rename(home)  # atomic: a concurrent installer's rename loses, its copy is dropped
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    return binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def blob_argv(binary: Path, port: int, location: Path) -> list[str]:
    return [
        str(binary),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--location",
        str(location),
        "--skipApiVersionCheck",
        "--silent",
    ]


class LocalAzurite:
    """An `azurite-blob` child process on 127.0.0.1 (a free port unless given)."""

    def __init__(self, port: int | None = None, location: Path | None = None) -> None:
        self.port = port or _free_port()
        self._tmp = None if location else tempfile.TemporaryDirectory(prefix="azurite-data-")
        self.location = location or Path(self._tmp.name)  # type: ignore[union-attr]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def account_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.account_url};"
        )

    def start(self) -> LocalAzurite:
        self.location.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            blob_argv(azurite_blob_binary(), self.port, self.location),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"azurite-blob exited during start (code {self.proc.returncode})")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"azurite-blob did not listen on {self.port} within {START_TIMEOUT_S}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> LocalAzurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def container_sas_url(
        self,
        container: str,
        *,
        expiry: datetime | None = None,
        permission: str = "rl",
        key: str = ACCOUNT_KEY,
    ) -> str:
        """A container SAS URL (read + list by default, 1 h), signed with `key` (the account's
        unless given: another key makes a URL the emulator refuses)."""
        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        token = generate_container_sas(
            ACCOUNT,
            container,
            account_key=key,
            permission=ContainerSasPermissions.from_string(permission),
            expiry=expiry or datetime.now(UTC) + timedelta(hours=1),
        )
        return f"{self.account_url}/{container}?{token}"

    def upload(self, container: str, blobs: Iterable[tuple[str, bytes]]) -> int:
        """Create `container` (when missing) and upload the blobs; returns how many."""
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import BlobServiceClient

        with BlobServiceClient.from_connection_string(self.connection_string) as service:
            client = service.get_container_client(container)
            with contextlib.suppress(ResourceExistsError):
                client.create_container()
            n = 0
            for name, data in blobs:
                client.upload_blob(name, data, overwrite=True)
                n += 1
            return n


DEMO_CONTAINER: Final = "insights-logs-appservicehttplogs"


def seed_demo(server: LocalAzurite, hours: int = 6) -> str:
    """Fill the demo log container with generated App Service logs of the last `hours` hours
    (the log-analyzer's demo data: an error burst, a slow path, AI crawlers); its SAS URL (a
    week)."""
    from mcpmesh.logs.demo import DemoSpec, hourly_blobs

    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    spec = DemoSpec(start=now - timedelta(hours=hours - 1), hours=hours, per_minute=30, burst=(150, 165))
    server.upload(DEMO_CONTAINER, hourly_blobs(spec))
    return server.container_sas_url(DEMO_CONTAINER, expiry=now + timedelta(days=7))
