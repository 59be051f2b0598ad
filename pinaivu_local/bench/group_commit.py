"""What waiting for a durable record adds to a response: submit -> commit synced, p50 and p99.

Not a test (pytest does not collect it). Run from the repository root:

    python -m pinaivu_local.bench.group_commit [--dir DIR] [--requests N]

`concurrency` clients each submit a record and await `receipt.durable()`, as the API does before
sending a response, over and over. The database lives in DIR (default: a temporary directory under
/tmp): measure on the disk the data directory will use, since the sync at commit is what costs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import event

from pinaivu_local.clock import utcnow
from pinaivu_local.requestlog.commitment import input_digest
from pinaivu_local.requestlog.log import RequestLog, Retention
from pinaivu_local.requestlog.records import FinishedRequest
from pinaivu_local.storage.database import Database


def a_record() -> FinishedRequest:
    return FinishedRequest(
        request_id=f"req_{uuid.uuid4().hex}",
        created_at=utcnow(),
        kind="chat",
        key_id="key_bench",
        key_name="bench",
        model_id="llama3.2:1b",
        status_code=200,
        finish_reason="stop",
        prompt_tokens=40,
        completion_tokens=32,
        sampling='{"temperature": 0.7, "top_p": 1.0, "max_tokens": 32, "stop": []}',
        input_sha256=input_digest("prompt"),
        output_sha256=input_digest("output"),
    )


async def measure(log: RequestLog, concurrency: int, total: int) -> list[float]:
    waits: list[float] = []
    records = [a_record() for _ in range(total)]  # built beforehand: only the wait is timed

    async def client() -> None:
        while records:
            record = records.pop()
            started = time.perf_counter()
            await log.submit(record).durable()
            waits.append(time.perf_counter() - started)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return waits


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="where the database goes (default: a temporary directory)")
    parser.add_argument("--requests", type=int, default=2000, help="records per concurrency level")
    parser.add_argument(
        "--synchronous", choices=["FULL", "NORMAL"], default="FULL", help="NORMAL: for comparison (no sync per commit)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        database = Database(Path(folder) / "pinaivu.db")
        database.engine.dispose()  # new connections get the pragma below, after the server's own
        event.listen(database.engine, "connect", lambda conn, _: conn.execute(f"PRAGMA synchronous={args.synchronous}"))
        commits: list[int] = []
        event.listen(database.engine, "commit", lambda _conn: commits.append(1))
        log = RequestLog(database, Retention(days=30, rows=10_000_000), backlog=100_000)
        try:
            print(f"database in {folder}; synchronous={args.synchronous} (FULL, the server's: a commit is synced)")
            print("concurrency  records  commits  records/commit  p50 ms  p99 ms  max ms")
            for concurrency in (1, 4, 16, 64):
                commits.clear()
                waits = asyncio.run(measure(log, concurrency, args.requests))
                print(
                    f"{concurrency:>11}  {len(waits):>7}  {len(commits):>7}  {len(waits) / max(1, len(commits)):>14.1f}"
                    f"  {percentile(waits, 50) * 1000:>6.2f}  {percentile(waits, 99) * 1000:>6.2f}"
                    f"  {max(waits) * 1000:>6.2f}   (mean {statistics.fmean(waits) * 1000:.2f})"
                )
        finally:
            log.close()
            database.close()


if __name__ == "__main__":
    main()
