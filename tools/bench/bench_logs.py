"""log-analyzer benchmark: lines/s and peak RSS of the streaming analysis, from a local file and
from Azurite (the Blob API, hourly blobs), next to a load-everything analysis (the reference
analyzer's approach: every line parsed into a list, TimeTaken sorted for the percentiles).

Input: generated App Service HTTP log lines (`mcpmesh.logs.demo`, ~700 bytes each), a pool of
distinct lines written again and again with fresh times, to a temporary file of `--lines`
lines. Each measurement runs in a child process of its own, so its peak RSS (ru_maxrss) is its
own; one core (the analysis is one coroutine).

    .venv/bin/python tools/bench/bench_logs.py [--lines 200000 2000000] [--modes file azurite naive]
        [--naive-max 500000]

Figures (2 shared cores, 2026-12-02): see services/log-analyzer/README.md "Benchmark".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


def write_input(path: Path, lines: int) -> int:
    """`lines` HTTP log lines in one file, one hour of times per 100,000 lines; its size."""
    from mcpmesh.logs.demo import DemoSpec, generate

    pool = [
        json.loads(line)
        for _, line in generate(DemoSpec(hours=1, per_minute=1000, console_error_every=0, burst=(20, 25)))
        if b"AppServiceHTTPLogs" in line
    ]
    start = datetime(2026, 11, 1, tzinfo=UTC)
    with path.open("wb") as out:
        for i in range(lines):
            line = pool[i % len(pool)]
            line["time"] = (start + timedelta(milliseconds=36 * i)).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
            out.write(json.dumps(line).encode() + b"\n")
    return path.stat().st_size


def hourly(path: Path) -> list[tuple[str, bytes]]:
    """The file cut into blobs of 100,000 lines named in the hourly layout (for Azurite)."""
    from mcpmesh.logs.demo import blob_name

    blobs: list[tuple[str, bytes]] = []
    start = datetime(2026, 11, 1, tzinfo=UTC)
    with path.open("rb") as f:
        while True:
            lines = [f.readline() for _ in range(100_000)]
            data = b"".join(line for line in lines if line)
            if not data:
                return blobs
            blobs.append((blob_name("bench", start + timedelta(hours=len(blobs))), data))


def run_file(path: Path) -> dict[str, Any]:
    from mcpmesh.logs.analysis import Analysis, LineSplitter

    analysis = Analysis()
    splitter = LineSplitter(analysis)
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            splitter.feed(chunk)
    splitter.close()
    return analysis.report()


def run_azurite(sas_url: str) -> dict[str, Any]:
    from mcpmesh.logs import blobs
    from mcpmesh.logs.analysis import Analysis, LineSplitter

    async def skip(n: int) -> None:
        pass

    async def main() -> dict[str, Any]:
        analysis = Analysis()
        async with blobs.container(sas_url, 60) as client:
            listed, _ = await blobs.list_blobs(client, "", None, None, 100_000)
            for blob in listed:
                await blobs.read_blob(client, blob.name, LineSplitter(analysis), skip)
        return analysis.report()

    return asyncio.run(main())


def run_naive(path: Path) -> dict[str, Any]:
    """Load everything, then compute (what an in-memory analyzer does)."""
    records = []
    with path.open("rb") as f:
        for raw in f:
            line = json.loads(raw)
            props = line["properties"]
            records.append(json.loads(props) if isinstance(props, str) else props)
    times = sorted(float(r["TimeTaken"]) for r in records)
    errors = sum(1 for r in records if int(r["ScStatus"]) >= 400)
    return {"requests": len(records), "errors": errors, "latency_ms": {"p95": times[int(0.95 * len(times))]}}


def peak_rss_kb() -> int:
    """This process's peak RSS (VmHWM: ru_maxrss would carry the parent's peak over fork+exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(mode: str, target: str) -> None:
    started = time.perf_counter()
    if mode == "file":
        report = run_file(Path(target))
    elif mode == "azurite":
        report = run_azurite(target)
    else:
        report = run_naive(Path(target))
    elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "s": elapsed,
                "rss_mb": peak_rss_kb() / 1024,
                "requests": report["requests"],
                "p95": report["latency_ms"]["p95"],
            }
        )
    )


def measure(mode: str, target: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, target], capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--modes", nargs="+", default=["file", "azurite", "naive"])
    parser.add_argument(
        "--naive-max", type=int, default=500_000, help="largest input for the load-everything run"
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    print(f"{'mode':8} {'lines':>10} {'MB':>8} {'s':>7} {'lines/s':>10} {'peak RSS MB':>12} {'p95 ms':>8}")
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as tmp:
        for lines in args.lines:
            path = Path(tmp) / f"in-{lines}.jsonl"
            size = write_input(path, lines)
            for mode in args.modes:
                if mode == "naive" and lines > args.naive_max:
                    continue
                if mode == "azurite":
                    from mcpmesh.dev.azuriteproc import LocalAzurite

                    with LocalAzurite(location=Path(tmp) / "azurite") as server:
                        container = f"bench{lines}"
                        server.upload(container, hourly(path))
                        row = measure(mode, server.container_sas_url(container))
                else:
                    row = measure(mode, str(path))
                assert row["requests"] == lines, row
                print(
                    f"{mode:8} {lines:>10} {size / 1e6:>8.0f} {row['s']:>7.1f} {lines / row['s']:>10,.0f} "
                    f"{row['rss_mb']:>12.0f} {row['p95']:>8}",
                    flush=True,
                )
            os.unlink(path)


if __name__ == "__main__":
    main()
