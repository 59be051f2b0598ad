"""Issue #10, point 7: `kill -9` under load, then a restart: every request answered 200 has its record.

With `locked`, another process holds the database's write lock when the server is killed: the
responses of that moment must not have gone out (records queued in memory die with the process).
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.helpers import AUTH, RunningServer

WORKERS = 6


def load(server: RunningServer, stop: threading.Event, answered: list[str], lock: threading.Lock) -> None:
    """Send completions one after another until stopped or the server is gone; note each 200's request_id."""
    with httpx.Client(base_url=server.v1, headers=AUTH, timeout=30) as client:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                response = client.post(
                    "/completions", json={"model": "llama3.2:1b", "prompt": f"count {n}", "max_tokens": 3}
                )
            except httpx.TransportError:
                return  # killed
            if response.status_code == 200:
                with lock:
                    answered.append(response.headers["x-request-id"])


@pytest.mark.parametrize("locked", [False, True], ids=["plain", "locked"])
def test_kill_9_under_load_loses_no_answered_record(
    server_factory: Callable[..., RunningServer], two_models: Path, locked: bool
) -> None:
    server = server_factory("--models-file", str(two_models))
    answered: list[str] = []
    guard = threading.Lock()
    stop = threading.Event()
    workers = [threading.Thread(target=load, args=(server, stop, answered, guard)) for _ in range(WORKERS)]
    for worker in workers:
        worker.start()
    holder = None
    try:
        deadline = time.monotonic() + 60
        while len(answered) < 30:  # under load
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        if locked:
            holder = sqlite3.connect(server.data_dir / "pinaivu.db", isolation_level=None, check_same_thread=False)
            holder.execute("BEGIN EXCLUSIVE")
            time.sleep(1.5)  # requests keep finishing meanwhile
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)
    finally:
        stop.set()
        if holder is not None:
            holder.rollback()
            holder.close()
        for worker in workers:
            worker.join(timeout=60)
    with guard:
        acknowledged = list(answered)
    assert len(acknowledged) >= 30

    restarted = server_factory("--models-file", str(two_models), workdir=server.data_dir.parent)
    assert restarted.data_dir == server.data_dir
    with httpx.Client(base_url=restarted.v1, headers=AUTH, timeout=30) as client:
        missing = [rid for rid in acknowledged if client.get(f"/requests/{rid}").status_code != 200]
    assert missing == [], f"{len(missing)} of {len(acknowledged)} answered requests have no record"
