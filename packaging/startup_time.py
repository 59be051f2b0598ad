"""Seconds from starting `pinaivu-local serve --test-models` to the first healthy /health (docs/models-and-gpu.md).

    python3 packaging/startup_time.py [--runs 5] PROGRAM [PROGRAM...]
    python3 packaging/startup_time.py dist/pinaivu-local-0.1.0-linux-x86_64-cpu .venv/bin/pinaivu-local

Each start is `env -i HOME=<folder> PATH=/usr/bin:/bin PROGRAM serve --test-models --port <free>` from an
empty folder, stopped with SIGTERM once /health answers. "first start" has a new data directory (the tiny
models are written, the weight-repack probe runs once), "next start" reuses it. The programs take turns,
so a busy machine slows them alike. Standard library only.
"""

from __future__ import annotations

import argparse
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def time_to_health(command: list[str], home: Path) -> tuple[float, float]:
    """Start the server, poll /health every 20 ms, stop it: (seconds until it answered 200, CPU seconds used)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    port = free_port()
    cwd = home / "cwd"
    cwd.mkdir(parents=True, exist_ok=True)
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    started = time.monotonic()
    process = subprocess.Popen(
        [*command, "serve", "--test-models", "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    healthy = None
    try:
        while healthy is None and time.monotonic() - started < TIMEOUT_S:
            if process.poll() is not None:
                sys.exit(f"{command[0]} exited with {process.returncode} before /health answered")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                    if response.status == 200:
                        healthy = time.monotonic() - started
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    if healthy is None:
        sys.exit(f"no healthy /health within {TIMEOUT_S}s")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU of the whole run, stop included: a figure that a busy machine does not inflate as it does the wall time
    return healthy, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("programs", nargs="+", help="the binary, the installed pinaivu-local, ...")
    args = parser.parse_args()
    programs = [str(Path(p).resolve()) for p in args.programs]
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(args.runs):
        for program in programs:
            with tempfile.TemporaryDirectory(prefix="pinaivu-startup-") as home:
                times.setdefault((program, "first start"), []).append(time_to_health([program], Path(home)))
                times.setdefault((program, "next start"), []).append(time_to_health([program], Path(home)))
    for (program, label), runs in times.items():
        wall = [w for w, _ in runs]
        print(
            f"{program}\n  {label:<12} median {statistics.median(wall):.2f} s, min {min(wall):.2f} s, "
            f"max {max(wall):.2f} s; CPU median {statistics.median(c for _, c in runs):.2f} s "
            f"({len(runs)} runs: {' '.join(f'{w:.2f}' for w in wall)})"
        )


if __name__ == "__main__":
    main()
